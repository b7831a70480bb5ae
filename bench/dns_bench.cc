// Micro-benchmarks of the per-query DNS work on a shard: parse + answer a private name, cache TTL and TTL
// decrement of a typical upstream response, validation of it, and DoT framing of pipelined queries.
#include "common/dns/framing.hh"
#include "common/dns/wire.hh"

#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace dns = zt::dns;

namespace {

using bytes = std::vector<uint8_t>;

void put16(bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
}
void put32(bytes& b, uint32_t v) {
    put16(b, static_cast<uint16_t>(v >> 16));
    put16(b, static_cast<uint16_t>(v));
}
void put_name(bytes& b, std::string_view dotted) {
    while (!dotted.empty()) {
        const size_t dot = std::min(dotted.find('.'), dotted.size());
        b.push_back(static_cast<uint8_t>(dot));
        b.insert(b.end(), dotted.begin(), dotted.begin() + static_cast<long>(dot));
        dotted.remove_prefix(std::min(dot + 1, dotted.size()));
    }
    b.push_back(0);
}

// What dig and systemd-resolved send: RD, one question, OPT with a 1232-byte payload size.
bytes typical_query(std::string_view name, uint16_t qtype) {
    bytes b;
    for (uint16_t v : {uint16_t{0x4242}, uint16_t{0x0120}, uint16_t{1}, uint16_t{0}, uint16_t{0}, uint16_t{1}}) {
        put16(b, v);
    }
    put_name(b, name);
    put16(b, qtype);
    put16(b, dns::class_in);
    b.push_back(0);
    put16(b, dns::rr_type::opt);
    put16(b, 1232);
    put32(b, 0);
    put16(b, 0);
    return b;
}

// A public answer as resolvers return it: a CNAME, two A records, two NS in authority, OPT.
bytes typical_upstream_response() {
    bytes b;
    for (uint16_t v : {uint16_t{0x4242}, uint16_t{0x8180}, uint16_t{1}, uint16_t{3}, uint16_t{2}, uint16_t{1}}) {
        put16(b, v);
    }
    put_name(b, "www.example.com");
    put16(b, dns::rr_type::a);
    put16(b, dns::class_in);
    auto rr = [&](uint16_t type, uint32_t ttl, const bytes& rdata) {
        put16(b, 0xc00c);
        put16(b, type);
        put16(b, dns::class_in);
        put32(b, ttl);
        put16(b, static_cast<uint16_t>(rdata.size()));
        b.insert(b.end(), rdata.begin(), rdata.end());
    };
    bytes cname;
    put_name(cname, "www.example.com.cdn.example.net");
    rr(dns::rr_type::cname, 3600, cname);
    rr(dns::rr_type::a, 300, {93, 184, 216, 34});
    rr(dns::rr_type::a, 280, {93, 184, 216, 35});
    bytes ns1, ns2;
    put_name(ns1, "a.iana-servers.net");
    put_name(ns2, "b.iana-servers.net");
    rr(dns::rr_type::ns, 86400, ns1);
    rr(dns::rr_type::ns, 86400, ns2);
    b.push_back(0);
    put16(b, dns::rr_type::opt);
    put16(b, 1232);
    put32(b, 0);
    put16(b, 0);
    return b;
}

constexpr std::array<std::array<uint8_t, 4>, 1> proxy_v4{{{203, 0, 113, 50}}};

void parse_and_answer_private_a(benchmark::State& state) {
    const bytes msg = typical_query("db.internal.corp", dns::rr_type::a);
    const auto in = std::as_bytes(std::span(msg));
    std::array<char, dns::name_buffer_size> name{};
    std::array<std::byte, 1232> out{};
    for (auto _ : state) {
        const dns::query q = dns::parse_query(in, name);
        dns::response_spec spec;
        spec.ttl = 300;
        spec.a = proxy_v4;
        const dns::build_result r = dns::build_response(q, spec, out);
        benchmark::DoNotOptimize(r);
        benchmark::ClobberMemory();
    }
}
BENCHMARK(parse_and_answer_private_a);

void parse_query_only(benchmark::State& state) {
    const bytes msg = typical_query("Db.Internal.Corp", dns::rr_type::a);
    const auto in = std::as_bytes(std::span(msg));
    std::array<char, dns::name_buffer_size> name{};
    for (auto _ : state) {
        const dns::query q = dns::parse_query(in, name);
        benchmark::DoNotOptimize(q);
    }
}
BENCHMARK(parse_query_only);

void nxdomain_with_soa_padded(benchmark::State& state) {
    bytes msg = typical_query("missing.internal.corp", dns::rr_type::a);
    // Turn the OPT's empty RDATA into one Padding option, as DoT clients send.
    msg[msg.size() - 1] = 4;
    put16(msg, dns::edns_option_padding);
    put16(msg, 0);
    const auto in = std::as_bytes(std::span(msg));
    std::array<char, dns::name_buffer_size> name{};
    std::array<std::byte, 1232> out{};
    const dns::soa_record soa{"internal.corp", "ns1.internal.corp", "hostmaster.internal.corp"};
    for (auto _ : state) {
        const dns::query q = dns::parse_query(in, name);
        dns::response_spec spec;
        spec.code = dns::rcode::nxdomain;
        spec.soa = &soa;
        const dns::build_result r = dns::build_response(q, spec, out);
        benchmark::DoNotOptimize(r);
        benchmark::ClobberMemory();
    }
}
BENCHMARK(nxdomain_with_soa_padded);

void upstream_validate(benchmark::State& state) {
    const bytes query = typical_query("www.example.com", dns::rr_type::a);
    const bytes resp = typical_upstream_response();
    const auto question = std::as_bytes(std::span(query)).subspan(12, 17 + 4);
    for (auto _ : state) {
        benchmark::DoNotOptimize(dns::validate_response(std::as_bytes(std::span(resp)), 0x4242, question));
    }
}
BENCHMARK(upstream_validate);

void upstream_cache_ttl(benchmark::State& state) {
    const bytes resp = typical_upstream_response();
    for (auto _ : state) {
        benchmark::DoNotOptimize(dns::response_cache_ttl(std::as_bytes(std::span(resp)), 0, 86400));
    }
}
BENCHMARK(upstream_cache_ttl);

void cached_ttl_decrement(benchmark::State& state) {
    bytes resp = typical_upstream_response();
    for (auto _ : state) {
        benchmark::DoNotOptimize(dns::decrement_ttls(std::as_writable_bytes(std::span(resp)), 0));
        benchmark::ClobberMemory();
    }
}
BENCHMARK(cached_ttl_decrement);

// 16 pipelined queries in one receive buffer, walked frame by frame.
void dot_framing_16_pipelined(benchmark::State& state) {
    const bytes msg = typical_query("db.internal.corp", dns::rr_type::a);
    bytes stream;
    for (int i = 0; i < 16; ++i) {
        put16(stream, static_cast<uint16_t>(msg.size()));
        stream.insert(stream.end(), msg.begin(), msg.end());
    }
    for (auto _ : state) {
        std::span<const std::byte> rest = std::as_bytes(std::span(stream));
        size_t frames = 0;
        for (dns::frame f = dns::next_frame(rest); f.status == dns::frame_status::complete; f = dns::next_frame(rest)) {
            rest = rest.subspan(f.consumed);
            ++frames;
        }
        benchmark::DoNotOptimize(frames);
    }
    state.SetItemsProcessed(state.iterations() * 16);
}
BENCHMARK(dot_framing_16_pipelined);

} // namespace

BENCHMARK_MAIN();
