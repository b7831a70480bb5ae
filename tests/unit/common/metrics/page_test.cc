#include "common/metrics/page.hh"

#include <doctest/doctest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

using namespace zt::metrics;

namespace {

struct block {
    uint64_t queries;
    uint64_t active;
    uint64_t latency[3];
};

std::vector<slot_desc> layout() {
    return {{kind::counter, "queries"},
            {kind::gauge, "connections_active"},
            {kind::histogram, "answer_latency"},
            {kind::histogram, "answer_latency"},
            {kind::histogram, "answer_latency"}};
}

} // namespace

TEST_CASE("a page written by the data plane reads back through a second mapping") {
    std::string err;
    auto p = page::create(layout(), sizeof(block), 2, err);
    REQUIRE_MESSAGE(p, err);
    auto* b0 = static_cast<block*>(p->block(0));
    auto* b1 = static_cast<block*>(p->block(1));
    CHECK(reinterpret_cast<uintptr_t>(b0) % 64 == 0);
    CHECK(reinterpret_cast<uintptr_t>(b1) % 64 == 0);
    b0->queries = 7;
    b0->active = 2;
    b0->latency[0] = 1;
    b0->latency[1] = 3;
    b0->latency[2] = 5;
    b1->queries = 11;

    view v;
    REQUIRE(v.open(p->fd()) == "");
    CHECK(v.blocks() == 2);
    REQUIRE(v.slots().size() == 5);
    CHECK(v.slots()[1].name == "connections_active");
    CHECK(v.value(0, 0) == 7);
    CHECK(v.value(1, 0) == 11);
    b1->queries = 12; // shared, not copied
    CHECK(v.value(1, 0) == 12);

    const view* views[] = {&v};
    int pids[] = {42};
    std::string text = render_prometheus(views, pids);
    CHECK(text.find("# TYPE ztdns_queries_total counter\n") != std::string::npos);
    CHECK(text.find("ztdns_queries_total{pid=\"42\",shard=\"0\"} 7\n") != std::string::npos);
    CHECK(text.find("ztdns_queries_total{pid=\"42\",shard=\"1\"} 12\n") != std::string::npos);
    CHECK(text.find("ztdns_connections_active{pid=\"42\",shard=\"0\"} 2\n") != std::string::npos);
    // Buckets are cumulative, in seconds, the last one +Inf.
    CHECK(text.find("ztdns_answer_latency_seconds_bucket{pid=\"42\",shard=\"0\",le=\"2e-06\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("ztdns_answer_latency_seconds_bucket{pid=\"42\",shard=\"0\",le=\"4e-06\"} 4\n") !=
          std::string::npos);
    CHECK(text.find("ztdns_answer_latency_seconds_bucket{pid=\"42\",shard=\"0\",le=\"+Inf\"} 9\n") !=
          std::string::npos);
    CHECK(text.find("ztdns_answer_latency_seconds_count{pid=\"42\",shard=\"0\"} 9\n") != std::string::npos);
}

TEST_CASE("a page that is not sealed, or whose layout lies, is refused") {
    int fd = ::memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 4096) == 0);
    view v;
    CHECK(v.open(fd).find("not sealed") != std::string::npos);

    // Sealed, but slots beyond the file.
    header h{};
    std::memcpy(h.magic, magic, sizeof h.magic);
    h.version = version;
    h.blocks = 1000;
    h.slots = 4;
    h.names_offset = sizeof h;
    h.names_size = 0;
    h.data_offset = 64;
    h.block_stride = 64;
    REQUIRE(::pwrite(fd, &h, sizeof h, 0) == ssize_t(sizeof h));
    REQUIRE(::fcntl(fd, F_ADD_SEALS, required_seals) == 0);
    CHECK(v.open(fd).find("inconsistent layout") != std::string::npos);
    CHECK_FALSE(v.valid());

    // Names cut short.
    h.blocks = 1;
    int fd2 = ::memfd_create("t2", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    REQUIRE(::ftruncate(fd2, 4096) == 0);
    REQUIRE(::pwrite(fd2, &h, sizeof h, 0) == ssize_t(sizeof h));
    REQUIRE(::fcntl(fd2, F_ADD_SEALS, required_seals) == 0);
    CHECK(v.open(fd2).find("cut short") != std::string::npos);
    ::close(fd);
    ::close(fd2);
}

TEST_CASE("a slot name outside [a-z0-9_] is refused, so rendering cannot be injected into") {
    std::string err;
    auto p = page::create({{kind::counter, "bad\"} 1\nevil"}}, 8, 1, err);
    REQUIRE(p);
    view v;
    CHECK(v.open(p->fd()).find("not [a-z0-9_]") != std::string::npos);
}
