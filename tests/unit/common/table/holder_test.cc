// The snapshot holder: readers switch at their refresh(), a table is released
// only after every registered reader has moved past it, and reader threads
// that swap tables while reading never touch an unmapped one.
#include "common/table/holder.hh"
#include "tests/unit/common/table/test_tables.hh"

#include <doctest/doctest.h>

#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

using namespace zt::table;
using namespace zt::table::test;

namespace {

/// A config whose content says its generation: zone gen<g>.corp with A 10.0.<g/256>.<g%256>.
zt::config::config config_for(uint64_t g) {
    zt::config::config c;
    zt::config::zone z;
    z.name = "gen" + std::to_string(g) + ".corp";
    std::string addr = "10.0." + std::to_string(g / 256 % 256) + "." + std::to_string(g % 256);
    z.records = {{"@", {a(addr.c_str())}}};
    c.zones = {z};
    return c;
}

/// The table in a read-only private mapping, as the subscriber has it:
/// touching it after release faults at once.
std::pair<blob, table> mapped(const std::vector<std::byte>& bytes) {
    void* p = mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    std::memcpy(p, bytes.data(), bytes.size());
    REQUIRE(mprotect(p, bytes.size(), PROT_READ) == 0);
    blob b = blob::adopt_mapping(p, bytes.size());
    auto r = open(b.bytes());
    REQUIRE(r.ok());
    return {std::move(b), r.view};
}

void publish(holder& h, uint64_t g) {
    auto [b, t] = mapped(compile_ok(config_for(g), g));
    h.publish(std::move(b), t);
}

} // namespace

TEST_CASE("a table is released only when every reader has moved past it") {
    holder h(4);
    auto r1 = h.add_reader();
    auto r2 = h.add_reader();
    CHECK(r1.current().generation() == 0);
    CHECK_FALSE(r1.current().find("gen1.corp").found());

    publish(h, 1);
    CHECK(h.latest().generation() == 1);
    CHECK(r1.current().generation() == 0); // not before its refresh
    CHECK(r1.refresh());
    CHECK_FALSE(r1.refresh()); // one switch per new table
    CHECK(r2.refresh());
    CHECK(r1.current().find("gen1.corp").found());

    publish(h, 2);
    CHECK(h.retained() == 2);
    CHECK(r1.refresh());
    CHECK(r1.current().generation() == 2);
    CHECK(h.collect() == 2); // r2 still reads generation 1
    CHECK(r2.current().find("gen1.corp").found());
    CHECK(r2.refresh());
    CHECK(h.collect() == 1);

    // A reader registered now pins the current table until its first refresh.
    auto r3 = h.add_reader();
    publish(h, 3);
    CHECK(r1.refresh());
    CHECK(r2.refresh());
    CHECK(h.collect() == 2);
    CHECK(r3.refresh());
    CHECK(r3.current().generation() == 3);
    CHECK(h.collect() == 1);

    // A reader that goes away stops holding tables back.
    publish(h, 4);
    CHECK(r1.refresh());
    CHECK(r3.refresh());
    CHECK(h.collect() == 2);
    { auto gone = std::move(r2); }
    CHECK(h.collect() == 1);

    // Slots are reused; beyond max_readers add_reader() throws.
    auto r4 = h.add_reader();
    auto r5 = h.add_reader();
    CHECK_THROWS_AS(h.add_reader(), std::length_error);
}

TEST_CASE("reader threads swapping tables while reading never see a released one") {
    constexpr int readers = 3;
    constexpr uint64_t tables = 300;
    holder h(readers);
    // Compile up front: the publishing loop should be fast to stress the swaps.
    std::vector<std::vector<std::byte>> blobs;
    for (uint64_t g = 1; g <= tables; ++g) {
        blobs.push_back(compile_ok(config_for(g), g));
    }
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> checks{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < readers; ++i) {
        threads.emplace_back([&, r = h.add_reader()]() mutable {
            uint64_t last = 0, local = 0;
            bool ok = true;
            while (!stop.load(std::memory_order_relaxed)) {
                r.refresh(); // the loop turn boundary
                const table& t = r.current();
                uint64_t g = t.generation();
                if (g == 0) {
                    continue;
                }
                ok &= g >= last;
                last = g;
                // Read the whole table: a released mapping would fault here.
                for (int k = 0; k < 20; ++k) {
                    auto m = t.find("gen" + std::to_string(g) + ".corp");
                    auto recs = t.records(m.rrset);
                    ok &=
                        m.found() && recs.size() == 1 && recs[0].addr[2] == g / 256 % 256 && recs[0].addr[3] == g % 256;
                    ok &= !t.find("gen" + std::to_string(g + 1) + ".corp").found();
                    ++local;
                }
            }
            checks += local;
            CHECK(ok);
        });
    }
    size_t most = 0;
    for (uint64_t g = 1; g <= tables; ++g) {
        auto [b, t] = mapped(blobs[g - 1]);
        h.publish(std::move(b), t);
        most = std::max(most, h.retained());
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        h.collect();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    stop = true;
    for (auto& t : threads) {
        t.join();
    }
    CHECK(h.collect() == 1); // readers gone: only the current table is left
    CHECK(h.latest().generation() == tables);
    CHECK(checks.load() > 0);
    MESSAGE(checks.load(), " reads; at most ", most, " tables held at once");
}
