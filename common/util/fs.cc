// Atomic file replacement and whole-file reads (see fs.hh).
#include "common/util/fs.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace zt::fs {
namespace {

std::string errno_msg(std::string_view what, const std::string& path, int e) {
    return fmt::format("{} {}: {}", what, path, std::strerror(e));
}

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) {
        return ".";
    }
    if (slash == 0) {
        return "/";
    }
    return path.substr(0, slash);
}

} // namespace

std::string write_atomic(const std::string& path, std::span<const char> bytes, mode_t mode) {
    std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return errno_msg("cannot create", tmp, errno);
    }
    // The umask must not widen or narrow what the caller asked for (keys are 0600).
    if (::fchmod(fd, mode) != 0) {
        int e = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        return errno_msg("cannot chmod", tmp, e);
    }
    const char* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
        ssize_t w = ::write(fd, p, left);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            ::close(fd);
            ::unlink(tmp.c_str());
            return errno_msg("cannot write", path, e);
        }
        p += w;
        left -= size_t(w);
    }
    if (::fsync(fd) != 0) {
        int e = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        return errno_msg("cannot fsync", path, e);
    }
    if (::close(fd) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        return errno_msg("cannot close", path, e);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        return errno_msg("cannot rename into", path, e);
    }
    std::string dir = dir_of(path);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        return errno_msg("cannot open directory", dir, errno);
    }
    int rc = ::fsync(dfd);
    int e = errno;
    ::close(dfd);
    if (rc != 0) {
        return errno_msg("cannot fsync directory", dir, e);
    }
    return {};
}

bool read_file(const std::string& path, std::string& out, std::string& err) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno_msg("cannot open", path, errno);
        return false;
    }
    out.clear();
    char buf[65536];
    for (;;) {
        ssize_t r = ::read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            err = errno_msg("cannot read", path, errno);
            ::close(fd);
            return false;
        }
        if (r == 0) {
            break;
        }
        out.append(buf, size_t(r));
    }
    ::close(fd);
    return true;
}

std::string make_dirs(const std::string& path, mode_t mode) {
    if (path.empty()) {
        return {};
    }
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i == path.size() || path[i] == '/') {
            std::string part = path.substr(0, i);
            if (::mkdir(part.c_str(), mode) != 0 && errno != EEXIST) {
                return errno_msg("cannot create directory", part, errno);
            }
        }
    }
    return {};
}

bool exists(const std::string& path) noexcept {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

} // namespace zt::fs
