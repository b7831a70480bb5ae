// fs::write_atomic: replaces whole files, keeps modes, and on failure leaves
// the old file intact and names the problem.
#include "common/util/fs.hh"

#include <doctest/doctest.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/zt-fs-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

std::string slurp(const std::string& path) {
    std::string out, err;
    REQUIRE(zt::fs::read_file(path, out, err));
    return out;
}

} // namespace

TEST_CASE("write_atomic replaces content and sets the mode") {
    auto dir = temp_dir();
    auto path = dir + "/key.pem";
    CHECK(zt::fs::write_atomic(path, std::string_view("first"), 0600).empty());
    CHECK(slurp(path) == "first");
    CHECK(zt::fs::write_atomic(path, std::string_view("second, longer"), 0600).empty());
    CHECK(slurp(path) == "second, longer");
    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    // No temp file is left behind.
    CHECK_FALSE(zt::fs::exists(path + ".tmp." + std::to_string(getpid())));
}

TEST_CASE("write_atomic into a missing directory reports the path") {
    auto err = zt::fs::write_atomic("/nonexistent-zt-dir/x.json", std::string_view("{}"));
    CHECK(err.find("/nonexistent-zt-dir/x.json") != std::string::npos);
}

TEST_CASE("a full disk leaves the old file intact and reports the error") {
    auto dir = temp_dir();
    // A 64 KiB tmpfs: real ENOSPC from the kernel, no injection. Needs root.
    if (mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=64k") != 0) {
        MESSAGE("skipped: cannot mount a small tmpfs (not root?)");
        return;
    }
    auto path = dir + "/zones.json";
    std::string old_content = "{\"db.internal.corp\": {}}";
    REQUIRE(zt::fs::write_atomic(path, std::string_view(old_content)).empty());
    std::string huge(1 << 20, 'x');
    auto err = zt::fs::write_atomic(path, std::string_view(huge));
    CHECK(err.find("zones.json") != std::string::npos);
    CHECK(err.find("No space left") != std::string::npos);
    CHECK(slurp(path) == old_content);
    CHECK_FALSE(zt::fs::exists(path + ".tmp." + std::to_string(getpid())));
    umount(dir.c_str());
}
