// wolfSSL's memory, pooled per thread: record buffers and handshake state
// come from size-class free lists that the thread refills from malloc only
// when they run dry, so a shard in its steady state never calls malloc for
// TLS (wolfSSL frees and re-allocates a record buffer for every record).
#pragma once

#include <cstdint>

namespace zt::tls {

/// Installs the allocator into wolfSSL. Call once, before any wolfSSL use
/// (tls::init() does). Any thread.
void install_pooled_allocator() noexcept;

/// How many of wolfSSL's allocations reached the system allocator, in all
/// threads since start (a relaxed counter: these are rare by design).
uint64_t system_allocations() noexcept;

} // namespace zt::tls
