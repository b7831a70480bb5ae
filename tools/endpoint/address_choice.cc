// Address choice with passive health (see address_choice.hh).
#include "tools/endpoint/address_choice.hh"

#include <algorithm>

namespace zt::endpoint {
namespace {

constexpr ms_t first_down_ms = 5000;
constexpr ms_t max_down_ms = 60000;

} // namespace

address_choice::address_choice(std::vector<net::address> addresses, size_t start) : _next(start) {
    for (auto& a : addresses) {
        _entries.push_back({a});
    }
}

std::vector<size_t> address_choice::order(ms_t now) {
    const size_t n = _entries.size();
    std::vector<size_t> up, down_now;
    if (n == 0) {
        return up;
    }
    const size_t first = _next++ % n;
    for (size_t k = 0; k < n; ++k) {
        const size_t i = (first + k) % n;
        (down(i, now) ? down_now : up).push_back(i);
    }
    std::stable_sort(down_now.begin(), down_now.end(),
                     [&](size_t a, size_t b) { return _entries[a].down_until < _entries[b].down_until; });
    up.insert(up.end(), down_now.begin(), down_now.end());
    return up;
}

void address_choice::failed(size_t i, ms_t now) {
    entry& e = _entries[i];
    ms_t d = first_down_ms;
    for (unsigned k = 0; k < e.failures && d < max_down_ms; ++k) {
        d *= 2;
    }
    e.down_until = now + std::min(d, max_down_ms);
    ++e.failures;
}

void address_choice::succeeded(size_t i) noexcept {
    _entries[i].down_until = 0;
    _entries[i].failures = 0;
}

} // namespace zt::endpoint
