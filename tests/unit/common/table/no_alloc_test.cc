// Lookups and refresh() allocate nothing (STYLE practice 5): a counting
// operator new for this test binary, thousands of lookups of every kind, zero
// allocations.
#include "common/table/holder.hh"
#include "tests/unit/common/table/test_tables.hh"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> g_allocations{0};
}

void* operator new(std::size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    return ::operator new(n);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}

using namespace zt::table;
using namespace zt::table::test;

TEST_CASE("lookups and refresh() allocate nothing") {
    auto bytes = compile_ok(sample_config(), 1);
    auto bytes2 = compile_ok(small_config(), 2);
    holder h(2);
    auto reader = h.add_reader();
    auto b = blob::copy_of(bytes);
    auto t = open(b.bytes());
    REQUIRE(t.ok());
    h.publish(std::move(b), t.view);

    static constexpr std::string_view names[] = {
        "db.internal.corp",
        "REPLICA.db.internal.corp.",
        "a.b.c.d.e.f.g.db.internal.corp",
        "www.example.com",
        "wiki.internal.corp",
        "api.internal.corp",
        "x..internal.corp",
        "",
    };
    static constexpr std::string_view cns[] = {cn_laptop, cn_phone, cn_db, "nobody"};
    uint64_t before = g_allocations.load();
    uint64_t acc = 0;
    for (int i = 0; i < 5000; ++i) {
        reader.refresh();
        const table& cur = reader.current();
        for (auto n : names) {
            auto m = cur.find(n);
            acc += m.zone + cur.records(m.rrset).size() + cur.zone_acl(m.zone).size();
            uint32_t svc = cur.zone_service(m.zone);
            acc += cur.service(svc).backends.size() + cur.zone_name(m.zone).size();
            const auto* be = cur.pick_backend(svc, uint32_t(i));
            acc += be ? be->port : 0;
        }
        for (auto cn : cns) {
            uint32_t ep = cur.find_endpoint(cn);
            acc += cur.endpoint(ep).revoked + cur.allows(0, ep) + cur.allows(1, ep);
        }
    }
    CHECK(g_allocations.load() == before);
    CHECK(acc > 0);

    // A switch to a new table: still nothing allocated on the reader's side.
    auto b2 = blob::copy_of(bytes2);
    auto t2 = open(b2.bytes());
    h.publish(std::move(b2), t2.view);
    before = g_allocations.load();
    CHECK(reader.refresh());
    CHECK(reader.current().find("db.corp").found());
    CHECK(g_allocations.load() == before);
}
