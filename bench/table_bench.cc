// Route table micro-benchmarks: lookups (hit, miss, deep label, CN, ACL) in a
// 100,000-zone table, open() validation, compile, and compile + publish to a
// subscriber over a real unix socket.
#include "common/table/holder.hh"
#include "common/table/reader.hh"
#include "common/table/subscriber.hh"
#include "common/util/log.hh"
#include "control/table/compiler.hh"
#include "control/table/publisher.hh"

#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>

using namespace zt;

namespace {

config::record a_record(const char* text) {
    config::record r;
    inet_pton(AF_INET, text, r.addr.data());
    return r;
}

/// `zones` zones z<i>.bench.corp (apex + "www"), one service per 16 zones, 3 ACL entries each.
config::config make_config(size_t zones, size_t endpoints) {
    config::config c;
    for (size_t i = 0; i < endpoints; ++i) {
        char cn[32];
        std::snprintf(cn, sizeof cn, "c%011zx", i);
        config::endpoint e;
        e.cn = cn;
        e.name = "client";
        e.serial = "01";
        c.endpoints.push_back(e);
    }
    for (size_t i = 0; i < (zones + 15) / 16; ++i) {
        config::route r;
        r.service_cn = "s" + std::to_string(i);
        r.backends = {{"10.1." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256), 443, 1}};
        c.routes.push_back(r);
    }
    for (size_t i = 0; i < zones; ++i) {
        config::zone z;
        z.name = "z" + std::to_string(i) + ".bench.corp";
        z.records = {{"@", {a_record("203.0.113.1")}}, {"www", {a_record("203.0.113.2")}}};
        z.service_cn = "s" + std::to_string(i / 16);
        for (size_t k = 0; k < 3; ++k) {
            z.allowed_endpoints.push_back(c.endpoints[(i * 7 + k * 13) % endpoints].cn);
        }
        c.zones.push_back(std::move(z));
    }
    return c;
}

const config::config& big_config() {
    static const config::config c = make_config(100'000, 10'000);
    return c;
}

const std::vector<std::byte>& big_blob() {
    static const std::vector<std::byte> b = control::compile(big_config(), 1).blob;
    return b;
}

const table::table& big_table() {
    static const table::table t = table::open(big_blob()).view;
    return t;
}

void bm_find_hit(benchmark::State& state) {
    const auto& t = big_table();
    for (auto _ : state) {
        benchmark::DoNotOptimize(t.find("www.z4242.bench.corp"));
    }
}
BENCHMARK(bm_find_hit);

void bm_find_hit_apex_upper_case_dot(benchmark::State& state) {
    const auto& t = big_table();
    for (auto _ : state) {
        benchmark::DoNotOptimize(t.find("Z4242.Bench.Corp."));
    }
}
BENCHMARK(bm_find_hit_apex_upper_case_dot);

void bm_find_hit_random_zone(benchmark::State& state) {
    // 4096 different names: cache misses in a 100k-zone table, as real traffic has.
    const auto& t = big_table();
    std::vector<std::string> names;
    for (size_t i = 0; i < 4096; ++i) {
        names.push_back("www.z" + std::to_string(i * 24 % 100'000) + ".bench.corp");
    }
    size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(t.find(names[i++ & 4095]));
    }
}
BENCHMARK(bm_find_hit_random_zone);

void bm_find_miss(benchmark::State& state) {
    const auto& t = big_table();
    for (auto _ : state) {
        benchmark::DoNotOptimize(t.find("www.example.com"));
    }
}
BENCHMARK(bm_find_miss);

void bm_find_deep_label(benchmark::State& state) {
    // Seven labels above the zone: probes skip suffixes longer than any owner.
    const auto& t = big_table();
    for (auto _ : state) {
        benchmark::DoNotOptimize(t.find("a.b.c.d.e.f.g.z4242.bench.corp"));
    }
}
BENCHMARK(bm_find_deep_label);

void bm_find_endpoint(benchmark::State& state) {
    const auto& t = big_table();
    for (auto _ : state) {
        benchmark::DoNotOptimize(t.find_endpoint("c000000004d2"));
    }
}
BENCHMARK(bm_find_endpoint);

void bm_allows(benchmark::State& state) {
    const auto& t = big_table();
    auto m = t.find("z4242.bench.corp");
    uint32_t ep = t.zone_acl(m.zone)[1].endpoint;
    for (auto _ : state) {
        benchmark::DoNotOptimize(t.allows(m.zone, ep));
    }
}
BENCHMARK(bm_allows);

void bm_route_connection(benchmark::State& state) {
    // What the proxy does per connection: CN, name, ACL, service, backend.
    const auto& t = big_table();
    uint32_t r = 0;
    for (auto _ : state) {
        uint32_t ep = t.find_endpoint("c000000004d2");
        auto m = t.find("www.z4242.bench.corp");
        bool ok = t.allows(m.zone, ep);
        const auto* b = t.pick_backend(t.zone_service(m.zone), ++r);
        benchmark::DoNotOptimize(ok);
        benchmark::DoNotOptimize(b);
    }
}
BENCHMARK(bm_route_connection);

void bm_open_100k(benchmark::State& state) {
    const auto& b = big_blob();
    for (auto _ : state) {
        benchmark::DoNotOptimize(table::open(b).ok());
    }
    state.counters["bytes"] = double(b.size());
}
BENCHMARK(bm_open_100k)->Unit(benchmark::kMillisecond);

void bm_compile_100k(benchmark::State& state) {
    const auto& c = big_config();
    uint64_t g = 1;
    for (auto _ : state) {
        auto r = control::compile(c, ++g);
        benchmark::DoNotOptimize(r.blob.data());
    }
}
BENCHMARK(bm_compile_100k)->Unit(benchmark::kMillisecond);

void bm_compile_publish_100k(benchmark::State& state) {
    // Compile, memfd + seal + SCM_RIGHTS, and the subscriber's mmap + open()
    // + adopt + ack: the whole reload path of 100,000 zones.
    log::set_level(log::level::error);
    const auto& c = big_config();
    char dir[] = "/tmp/zt-table-bench.XXXXXX";
    if (mkdtemp(dir) == nullptr) {
        state.SkipWithError("mkdtemp");
        return;
    }
    std::string path = std::string(dir) + "/table.sock";
    {
        control::publisher p;
        if (!p.listen(path).empty()) {
            state.SkipWithError("listen");
            return;
        }
        table::holder h(1);
        table::subscriber s(h, {path});
        uint64_t g = 1;
        for (auto _ : state) {
            auto r = control::compile(c, ++g);
            p.publish(r.blob);
            while (h.latest().generation() != g || p.subscribers().empty() || p.subscribers()[0].adopted != g) {
                p.run_once(1);
                s.run_once(1);
            }
            h.collect();
        }
    }
    rmdir(dir);
}
BENCHMARK(bm_compile_publish_100k)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
