// The ring's busy polling: it polls when asked, and stops polling when the
// polls mostly run out empty (then tries one asked-for wait in eight).
#include "common/net/ring.hh"

#include <doctest/doctest.h>

#include <string>

using namespace zt;

namespace {

std::unique_ptr<net::ring> make_ring(uint32_t poll_us) {
    std::string err;
    auto r = net::ring::create(64, err);
    REQUIRE_MESSAGE(r, err);
    r->set_busy_poll(poll_us);
    return r;
}

/// One asked-for wait that finds nothing: polls (or not), then sleeps 1 ms.
void empty_wait(net::ring& r) {
    r.poll_next_wait();
    unsigned n = r.wait(1, [](const net::completion&) {});
    CHECK(n == 0);
}

} // namespace

TEST_CASE("polls that keep running out empty stop, except one probe in eight") {
    auto r = make_ring(50);
    for (int i = 0; i < 64; ++i) {
        empty_wait(*r);
    }
    CHECK(r->poll_hits() == 0);
    // Score 8 -> 7 after the first miss: from then on only the probes poll.
    CHECK(r->poll_misses() >= 8);
    CHECK(r->poll_misses() <= 10);
}

TEST_CASE("a completion that comes early in the window counts as a hit and keeps polling on") {
    // A 200 ms window: a 100 us timer lands in its first half unless this
    // thread stalls for 100 ms (a loaded CI machine under ASan stalls for
    // milliseconds, not that).
    auto r = make_ring(200'000);
    net::timeout_spec soon{0, 100'000};
    for (int i = 0; i < 16; ++i) {
        r->timeout(&soon, {net::op::timeout, 0, 0});
        r->poll_next_wait();
        unsigned n = 0;
        while (n == 0) {
            n = r->wait(100, [](const net::completion& c) { CHECK(c.t.kind == net::op::timeout); });
        }
    }
    CHECK(r->poll_hits() == 16);
    CHECK(r->poll_misses() == 0);
}

TEST_CASE("a ring that is not asked to poll, or has polling off, never polls") {
    auto off = make_ring(0);
    empty_wait(*off);
    auto unasked = make_ring(50);
    unsigned n = unasked->wait(1, [](const net::completion&) {});
    CHECK(n == 0);
    CHECK(off->poll_hits() + off->poll_misses() + unasked->poll_hits() + unasked->poll_misses() == 0);
}
