// File helpers for the control plane and tools: atomic replace (temp file,
// fsync, rename, fsync dir) and whole-file reads. Never used on a shard thread.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace zt::fs {

/// Replaces `path` atomically with `bytes`, mode `mode` (e.g. 0600 for keys):
/// writes `path.tmp.<pid>`, fsyncs it, renames it over `path`, fsyncs the
/// directory. On any failure the old file is untouched, the temp file is
/// removed, and the error (naming the path and the failing step) is returned.
/// An empty string means success. Any thread.
std::string write_atomic(const std::string& path, std::span<const char> bytes, mode_t mode = 0644);
inline std::string write_atomic(const std::string& path, std::string_view bytes, mode_t mode = 0644) {
    return write_atomic(path, std::span<const char>(bytes.data(), bytes.size()), mode);
}

/// Reads a whole file. Returns false and sets `err` (naming the path) on failure.
bool read_file(const std::string& path, std::string& out, std::string& err);

/// Creates a directory (and parents) with `mode`; existing is fine.
std::string make_dirs(const std::string& path, mode_t mode = 0755);

bool exists(const std::string& path) noexcept;

} // namespace zt::fs
