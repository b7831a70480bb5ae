// Micro-benchmarks of the proxy's sniffers, per connection on a shard: the Host of a browser-sized request and of
// curl's, the early "not HTTP" answer for a PostgreSQL client, and the SNI of real curl and openssl ClientHellos
// (the bytes captured for the fuzz corpora), whole and fragmented into 64-byte records.
#include "common/proto/client_hello.hh"
#include "common/proto/http_host.hh"

#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace proto = zt::proto;

namespace {

using bytes = std::vector<uint8_t>;

bytes corpus_file(const std::string& relative) {
    std::ifstream in(std::string(ZT_SOURCE_ROOT) + "/tests/fuzz/" + relative, std::ios::binary);
    return bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bytes fragmented(const bytes& single_record, size_t fragment) {
    bytes out;
    for (size_t at = 5; at < single_record.size(); at += fragment) {
        const size_t n = std::min(fragment, single_record.size() - at);
        out.insert(out.end(), {22, 3, 1, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)});
        out.insert(out.end(), single_record.begin() + static_cast<long>(at),
                   single_record.begin() + static_cast<long>(at + n));
    }
    return out;
}

void bench_http(benchmark::State& state, const bytes& in, proto::http_status want) {
    if (in.empty()) {
        state.SkipWithError("corpus file missing");
        return;
    }
    std::array<char, proto::name_buffer_size> name{};
    const auto view = std::as_bytes(std::span(in));
    for (auto _ : state) {
        const proto::http_result r = proto::sniff_http_host(view, name);
        benchmark::DoNotOptimize(r);
        if (r.status != want) {
            state.SkipWithError("unexpected result");
            break;
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.size()));
    state.counters["bytes"] = static_cast<double>(in.size());
}

void bench_tls(benchmark::State& state, const bytes& in, proto::tls_status want) {
    if (in.empty()) {
        state.SkipWithError("corpus file missing");
        return;
    }
    std::array<char, proto::name_buffer_size> name{};
    const auto view = std::as_bytes(std::span(in));
    for (auto _ : state) {
        const proto::client_hello_result r = proto::sniff_client_hello(view, name);
        benchmark::DoNotOptimize(r);
        if (r.status != want) {
            state.SkipWithError("unexpected result");
            break;
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.size()));
    state.counters["bytes"] = static_cast<double>(in.size());
}

void http_host_browser(benchmark::State& state) {
    bench_http(state, corpus_file("http_host_corpus/browser_get"), proto::http_status::found);
}
void http_host_curl(benchmark::State& state) {
    bench_http(state, corpus_file("http_host_corpus/curl_get_name_port"), proto::http_status::found);
}
void http_host_curl_absolute_form(benchmark::State& state) {
    bench_http(state, corpus_file("http_host_corpus/curl_proxy_absolute_form"), proto::http_status::found);
}
void http_not_http_postgres(benchmark::State& state) {
    bench_http(state, corpus_file("http_host_corpus/postgres_startup"), proto::http_status::not_http);
}
void client_hello_curl(benchmark::State& state) {
    bench_tls(state, corpus_file("client_hello_corpus/curl_tls13"), proto::tls_status::found);
}
void client_hello_openssl(benchmark::State& state) {
    bench_tls(state, corpus_file("client_hello_corpus/openssl_sni"), proto::tls_status::found);
}
void client_hello_curl_64_byte_records(benchmark::State& state) {
    bench_tls(state, fragmented(corpus_file("client_hello_corpus/curl_tls13"), 64), proto::tls_status::found);
}
void client_hello_curl_half(benchmark::State& state) {
    bytes in = corpus_file("client_hello_corpus/curl_tls13");
    in.resize(in.size() / 2);
    bench_tls(state, in, proto::tls_status::need_more);
}

} // namespace

BENCHMARK(http_host_browser);
BENCHMARK(http_host_curl);
BENCHMARK(http_host_curl_absolute_form);
BENCHMARK(http_not_http_postgres);
BENCHMARK(client_hello_curl);
BENCHMARK(client_hello_openssl);
BENCHMARK(client_hello_curl_64_byte_records);
BENCHMARK(client_hello_curl_half);

BENCHMARK_MAIN();
