// The subscriber against a hand-written sender: it adopts a sealed memfd,
// refuses an unsealed one (the sender could rewrite it after validation), a
// plain file, a wrong size, a corrupt table and an older generation, and
// acknowledges each. Also load_file() and reconnect with backoff.
#include "common/table/subscriber.hh"
#include "tests/unit/common/table/test_tables.hh"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>

using namespace zt::table;
using namespace zt::table::test;
namespace ch = zt::table::channel;

namespace {

/// A minimal publisher: listens, accepts one subscriber, sends what the test says.
struct hand_sender {
    std::string dir = temp_dir("zt-sub-test");
    std::string path = dir + "/table.sock";
    int listen_fd = -1;
    int conn = -1;

    hand_sender() {
        listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        REQUIRE(listen_fd >= 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strcpy(a.sun_path, path.c_str());
        REQUIRE(bind(listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(listen(listen_fd, 4) == 0);
    }
    ~hand_sender() {
        if (conn >= 0) {
            close(conn);
        }
        close(listen_fd);
        unlink(path.c_str());
        rmdir(dir.c_str());
    }
    void accept_from(subscriber& s) {
        for (int i = 0; i < 100 && !s.connected(); ++i) {
            s.run_once(10);
        }
        REQUIRE(s.connected());
        conn = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        REQUIRE(conn >= 0);
    }
    void send_fd(int fd, uint64_t generation, uint64_t size) {
        ch::table_msg m;
        m.generation = generation;
        m.size = size;
        ssize_t n = fd >= 0 ? ch::send_with_fd(conn, &m, sizeof m, fd) : ::send(conn, &m, sizeof m, MSG_NOSIGNAL);
        REQUIRE(n == ssize_t(sizeof m));
    }
    /// Lets the subscriber handle what was sent, then reads its ack.
    ch::ack_msg ack(subscriber& s) {
        ch::ack_msg a;
        for (int i = 0; i < 200; ++i) {
            s.run_once(5);
            pollfd p{conn, POLLIN, 0};
            if (poll(&p, 1, 0) == 1) {
                REQUIRE(recv(conn, &a, sizeof a, 0) == ssize_t(sizeof a));
                return a;
            }
        }
        FAIL("no ack");
        return a;
    }
};

int memfd_with(const std::vector<std::byte>& bytes, bool seal) {
    int fd = memfd_create("test-table", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, bytes.data(), bytes.size()) == ssize_t(bytes.size()));
    if (seal) {
        REQUIRE(fcntl(fd, F_ADD_SEALS, ch::required_seals) == 0);
    }
    return fd;
}

} // namespace

TEST_CASE("subscriber adopts sealed memfds and refuses everything else") {
    hand_sender tx;
    holder h(2);
    auto reader = h.add_reader();
    subscriber s(h, {tx.path});
    tx.accept_from(s);

    auto t5 = compile_ok(sample_config(), 5);
    SUBCASE("an unsealed memfd is refused") {
        int fd = memfd_with(t5, false);
        tx.send_fd(fd, 5, t5.size());
        auto a = tx.ack(s);
        CHECK(a.status == ch::ack_status::rejected);
        CHECK(a.generation == 5);
        CHECK(std::string(a.reason).find("not sealed") != std::string::npos);
        CHECK(h.latest().generation() == 0);
        // Partly sealed (no F_SEAL_WRITE) is refused too.
        REQUIRE(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
        tx.send_fd(fd, 5, t5.size());
        CHECK(tx.ack(s).status == ch::ack_status::rejected);
        close(fd);
        CHECK(s.rejected() == 2);
    }
    SUBCASE("a plain file is refused") {
        std::string file = tx.dir + "/plain";
        {
            std::ofstream(file, std::ios::binary)
                .write(reinterpret_cast<const char*>(t5.data()), std::streamsize(t5.size()));
        }
        int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
        tx.send_fd(fd, 5, t5.size());
        auto a = tx.ack(s);
        CHECK(a.status == ch::ack_status::rejected);
        CHECK(std::string(a.reason).find("not a sealable memfd") != std::string::npos);
        close(fd);
        unlink(file.c_str());
    }
    SUBCASE("a size that disagrees, a corrupt table, a generation that disagrees") {
        int fd = memfd_with(t5, true);
        tx.send_fd(fd, 5, t5.size() + 8);
        CHECK(std::string(tx.ack(s).reason).find("holds") != std::string::npos);
        tx.send_fd(fd, 6, t5.size());
        CHECK(std::string(tx.ack(s).reason).find("generation 5, message says 6") != std::string::npos);
        close(fd);
        auto bad = t5;
        bad[bad.size() - 3] ^= std::byte{4};
        fd = memfd_with(bad, true);
        tx.send_fd(fd, 5, bad.size());
        auto a = tx.ack(s);
        CHECK(a.status == ch::ack_status::rejected);
        CHECK(std::string(a.reason).find("bad_checksum") != std::string::npos);
        close(fd);
        CHECK(h.latest().generation() == 0);
    }
    SUBCASE("a message without an fd is refused") {
        tx.send_fd(-1, 5, t5.size());
        CHECK(std::string(tx.ack(s).reason).find("0 fds") != std::string::npos);
    }
    SUBCASE("sealed tables are adopted in generation order; the reader switches") {
        int fd = memfd_with(t5, true);
        tx.send_fd(fd, 5, t5.size());
        close(fd);
        auto a = tx.ack(s);
        CHECK(a.status == ch::ack_status::adopted);
        CHECK(a.generation == 5);
        CHECK(s.generation() == 5);
        CHECK(reader.refresh());
        CHECK(reader.current().find("db.internal.corp").found());

        auto t7 = compile_ok(small_config(), 7);
        fd = memfd_with(t7, true);
        tx.send_fd(fd, 7, t7.size());
        close(fd);
        CHECK(tx.ack(s).status == ch::ack_status::adopted);
        CHECK(h.retained() == 2); // the reader still has generation 5
        CHECK(reader.refresh());
        CHECK(reader.current().find("db.corp").found());
        for (int i = 0; i < 50 && h.retained() > 1; ++i) {
            s.run_once(5); // on_timer() collects
        }
        CHECK(h.retained() == 1);

        // Older: refused. The same again: acknowledged, nothing changes.
        fd = memfd_with(t5, true);
        tx.send_fd(fd, 5, t5.size());
        close(fd);
        a = tx.ack(s);
        CHECK(a.status == ch::ack_status::rejected);
        CHECK(std::string(a.reason).find("older") != std::string::npos);
        fd = memfd_with(t7, true);
        tx.send_fd(fd, 7, t7.size());
        close(fd);
        CHECK(tx.ack(s).status == ch::ack_status::adopted);
        CHECK_FALSE(reader.refresh());
        CHECK(s.adopted() == 2);
    }
}

TEST_CASE("subscriber reconnects with backoff when control goes away and comes back") {
    std::string path;
    holder h(1);
    std::unique_ptr<subscriber> s;
    {
        hand_sender tx;
        path = tx.path;
        s = std::make_unique<subscriber>(h, subscriber_options{tx.path, 200, 10, 40});
        tx.accept_from(*s);
    }
    // The sender is gone: the subscriber sees EOF, then fails to reconnect.
    for (int i = 0; i < 20 && s->connected(); ++i) {
        s->run_once(5);
    }
    CHECK_FALSE(s->connected());
    CHECK_FALSE(s->last_error().empty());
    int t = s->timeout_ms();
    CHECK(t >= 0);
    CHECK(t <= 60); // a retry is scheduled, bounded by backoff_max_ms plus jitter
    for (int i = 0; i < 10; ++i) {
        s->run_once(20);
    }
    CHECK_FALSE(s->connected());
    CHECK(s->timeout_ms() <= 50);

    hand_sender again;
    s = std::make_unique<subscriber>(h, subscriber_options{again.path, 200, 10, 40});
    again.accept_from(*s);
    CHECK(s->connected());
}

TEST_CASE("load_file: start from the data dir's table file") {
    auto dir = temp_dir("zt-load-test");
    std::string file = dir + "/table.bin";
    auto write = [&](const std::vector<std::byte>& b) {
        std::ofstream(file, std::ios::binary | std::ios::trunc)
            .write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    };
    holder h(1);
    subscriber s(h, {dir + "/nobody.sock"});
    CHECK(s.load_file(dir + "/missing").find("missing") != std::string::npos);

    auto t3 = compile_ok(sample_config(), 3);
    auto bad = t3;
    bad[200] ^= std::byte{1};
    write(bad);
    auto err = s.load_file(file);
    CHECK(err.find(file) != std::string::npos);
    CHECK(err.find("bad_checksum") != std::string::npos);
    write(std::vector<std::byte>(t3.begin(), t3.begin() + 100));
    CHECK_FALSE(s.load_file(file).empty());

    write(t3);
    CHECK(s.load_file(file).empty());
    CHECK(h.latest().generation() == 3);
    CHECK(h.latest().find("wiki.internal.corp").found());
    // An older or equal file does not replace a newer table.
    write(compile_ok(small_config(), 2));
    CHECK(s.load_file(file).empty());
    CHECK(h.latest().generation() == 3);
    unlink(file.c_str());
    rmdir(dir.c_str());
}
