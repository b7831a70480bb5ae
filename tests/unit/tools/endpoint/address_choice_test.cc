// Address choice: each order has every address once, starting one further each time; an address that failed is
// passed over (tried last) while it is down, for 5 s doubling per failure in a row up to a minute; a success
// forgets the failures.
#include "tools/endpoint/address_choice.hh"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace zt;
using namespace zt::endpoint;

namespace {

address_choice three(size_t start) {
    std::vector<net::address> list;
    for (const char* text : {"203.0.113.50:8443", "203.0.113.51:8443", "203.0.113.52:8443"}) {
        net::address a;
        REQUIRE(net::parse_address(text, a));
        list.push_back(a);
    }
    return address_choice(std::move(list), start);
}

using order_t = std::vector<size_t>;

} // namespace

TEST_CASE("each connection starts one address further; every address is in every order once") {
    auto c = three(0);
    REQUIRE(c.size() == 3);
    CHECK(c.at(1).str() == "203.0.113.51:8443");
    CHECK(c.order(0) == order_t{0, 1, 2});
    CHECK(c.order(0) == order_t{1, 2, 0});
    CHECK(c.order(0) == order_t{2, 0, 1});
    CHECK(c.order(0) == order_t{0, 1, 2});
    auto d = three(7); // a random start, wrapped
    CHECK(d.order(0) == order_t{1, 2, 0});
}

TEST_CASE("an address that failed is tried last while it is down, then in its turn again") {
    auto c = three(0);
    c.failed(0, 1000);
    CHECK(c.down(0, 1000));
    CHECK_FALSE(c.down(1, 1000));
    CHECK(c.order(1000) == order_t{1, 2, 0});
    CHECK(c.order(1000) == order_t{1, 2, 0});
    CHECK(c.order(1000) == order_t{2, 1, 0});
    // 5 s later it is back.
    CHECK(c.down(0, 5999));
    CHECK_FALSE(c.down(0, 6000));
    CHECK(c.order(6000) == order_t{0, 1, 2});
}

TEST_CASE("several down: the soonest back is tried first among them; all down still gives every address") {
    auto c = three(0);
    c.failed(2, 1000);
    c.failed(0, 2000);
    CHECK(c.order(2000) == order_t{1, 2, 0});
    c.failed(1, 3000);
    CHECK(c.order(3000) == order_t{2, 0, 1});
}

TEST_CASE("failures in a row keep an address down longer, up to a minute; a success forgets them") {
    auto c = three(0);
    ms_t now = 0;
    for (ms_t want : {5000, 10000, 20000, 40000, 60000, 60000}) {
        c.failed(1, now);
        CHECK(c.down(1, now + want - 1));
        CHECK_FALSE(c.down(1, now + want));
        now += want;
    }
    c.failed(1, now);
    c.succeeded(1);
    CHECK_FALSE(c.down(1, now));
    c.failed(1, now);
    CHECK_FALSE(c.down(1, now + 5000)); // back to the first step
}

TEST_CASE("no addresses: an empty order") {
    address_choice c({}, 3);
    CHECK(c.size() == 0);
    CHECK(c.order(0).empty());
}
