// Publisher and subscriber over a real unix socket in a temp dir: mode 0600,
// sealed memfd adopted, a second table replaces the first, a late subscriber
// gets the current table at once, acks show in the status list, a table that
// does not validate is never sent, and a restarted publisher is found again.
#include "control/table/publisher.hh"

#include "common/table/subscriber.hh"
#include "control/table/compiler.hh"
#include "tests/unit/common/table/test_tables.hh"

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <functional>

using namespace zt;
using namespace zt::table::test;

namespace {

/// Drives both ends until `done` or about two seconds.
bool pump(control::publisher& p, std::vector<table::subscriber*> subs, const std::function<bool()>& done) {
    for (int i = 0; i < 400; ++i) {
        if (done()) {
            return true;
        }
        p.run_once(1);
        for (auto* s : subs) {
            s->run_once(1);
        }
    }
    return done();
}

} // namespace

TEST_CASE("publish, replace, late subscriber, status") {
    auto dir = temp_dir("zt-pub-test");
    std::string path = dir + "/table.sock";
    {
        control::publisher p;
        REQUIRE(p.listen(path).empty());
        struct stat st {};
        REQUIRE(stat(path.c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 0777) == 0600);

        table::holder h1(2);
        auto reader = h1.add_reader();
        table::subscriber s1(h1, {path});
        CHECK(pump(p, {&s1}, [&] { return s1.connected() && p.subscribers().size() == 1; }));
        CHECK(h1.latest().generation() == 0); // nothing published yet

        auto g1 = compile_ok(sample_config(), 1);
        REQUIRE(p.publish(g1).empty());
        CHECK(p.generation() == 1);
        CHECK(pump(p, {&s1}, [&] { return p.subscribers()[0].adopted == 1; }));
        CHECK(s1.generation() == 1);
        CHECK(reader.refresh());
        CHECK(reader.current().find("db.internal.corp").found());

        auto g2 = compile_ok(small_config(), 2);
        REQUIRE(p.publish(g2).empty());
        CHECK(pump(p, {&s1}, [&] { return p.subscribers()[0].adopted == 2; }));
        CHECK(reader.refresh());
        CHECK(reader.current().generation() == 2);
        CHECK(reader.current().find("db.corp").found());
        CHECK(reader.current().find("x.io").found());
        CHECK_FALSE(reader.current().find("internal.corp").rrset != table::none); // now just a name under "corp"
        CHECK(pump(p, {&s1}, [&] { return h1.retained() == 1; }));                // the first mapping is gone

        // A data plane that connects now gets generation 2 at once.
        table::holder h2(1);
        table::subscriber s2(h2, {path});
        CHECK(pump(p, {&s1, &s2}, [&] {
            auto v = p.subscribers();
            return h2.latest().generation() == 2 && v.size() == 2 && v[1].adopted == 2;
        }));
        auto subs = p.subscribers();
        REQUIRE(subs.size() == 2);
        for (const auto& s : subs) {
            CHECK(s.adopted == 2);
            CHECK(s.sent == 2);
            CHECK(s.pid == getpid());
            CHECK(s.uid == getuid());
            CHECK(s.rejected == 0);
        }

        // A table that does not validate is refused and never sent.
        auto bad = compile_ok(sample_config(), 3);
        bad[bad.size() - 1] ^= std::byte{1};
        CHECK(p.publish(bad).find("bad_checksum") != std::string::npos);
        CHECK(p.generation() == 2);

        // An older generation is sent, and the subscribers say no.
        auto old = compile_ok(sample_config(), 1);
        REQUIRE(p.publish(old).empty());
        CHECK(pump(p, {&s1, &s2}, [&] {
            auto v = p.subscribers();
            return v.size() == 2 && v[0].rejected == 1 && v[1].rejected == 1;
        }));
        CHECK(p.subscribers()[0].error.find("older") != std::string::npos);
        CHECK(h1.latest().generation() == 2);

        // A subscriber that goes away leaves the list.
        {
            table::holder h3(1);
            auto s3 = std::make_unique<table::subscriber>(h3, table::subscriber_options{path});
            CHECK(pump(p, {s3.get()}, [&] { return p.subscribers().size() == 3; }));
            s3.reset();
            CHECK(pump(p, {}, [&] { return p.subscribers().size() == 2; }));
        }
    }
    // The publisher removed its socket.
    CHECK(access(path.c_str(), F_OK) != 0);
    rmdir(dir.c_str());
}

TEST_CASE("rapid reloads coalesce: one table in flight per subscriber") {
    auto dir = temp_dir("zt-pub-test");
    std::string path = dir + "/table.sock";
    {
        control::publisher p;
        REQUIRE(p.listen(path).empty());
        table::holder h(1);
        table::subscriber s(h, {path});
        CHECK(pump(p, {&s}, [&] { return p.subscribers().size() == 1; }));
        for (uint64_t g = 1; g <= 5; ++g) {
            REQUIRE(p.publish(compile_ok(small_config(), g)).empty());
        }
        CHECK(p.subscribers()[0].sent == 1); // 2..4 never leave control
        CHECK(pump(p, {&s}, [&] { return p.subscribers()[0].adopted == 5; }));
        CHECK(s.adopted() == 2); // generations 1 and 5
        CHECK(h.latest().generation() == 5);
    }
    rmdir(dir.c_str());
}

TEST_CASE("a subscriber finds a restarted publisher") {
    auto dir = temp_dir("zt-pub-test");
    std::string path = dir + "/table.sock";
    table::holder h(1);
    table::subscriber s(h, {path, 200, 5, 20});
    {
        control::publisher p;
        REQUIRE(p.listen(path).empty());
        REQUIRE(p.publish(compile_ok(small_config(), 4)).empty());
        CHECK(pump(p, {&s}, [&] { return h.latest().generation() == 4; }));
    }
    // Control is down: the data plane keeps its table and keeps trying.
    for (int i = 0; i < 20; ++i) {
        s.run_once(2);
    }
    CHECK_FALSE(s.connected());
    CHECK(h.latest().generation() == 4);
    control::publisher p2;
    REQUIRE(p2.listen(path).empty());
    REQUIRE(p2.publish(compile_ok(sample_config(), 5)).empty());
    CHECK(pump(p2, {&s}, [&] {
        return h.latest().generation() == 5 && p2.subscribers().size() == 1 && p2.subscribers()[0].adopted == 5;
    }));
    rmdir(dir.c_str());
}

TEST_CASE("save_table_file writes the file load_file reads") {
    auto dir = temp_dir("zt-pub-test");
    auto blob = compile_ok(sample_config(), 8);
    REQUIRE(control::save_table_file(dir + "/table.bin", blob).empty());
    table::holder h(1);
    table::subscriber s(h, {dir + "/none.sock"});
    CHECK(s.load_file(dir + "/table.bin").empty());
    CHECK(h.latest().generation() == 8);
    unlink((dir + "/table.bin").c_str());
    rmdir(dir.c_str());
}
