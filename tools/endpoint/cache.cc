// The stub's answer cache (see cache.hh).
#include "tools/endpoint/cache.hh"

#include <algorithm>
#include <cstring>

namespace zt::endpoint {

std::string dns_cache::key_of(const dns::query& q) {
    std::string k(q.qname);
    k.push_back('\0');
    k.push_back(char(q.qtype >> 8));
    k.push_back(char(q.qtype & 0xff));
    k.push_back(char(q.qclass >> 8));
    k.push_back(char(q.qclass & 0xff));
    k.push_back(char((q.opt.present ? 1 : 0) | (q.opt.dnssec_ok ? 2 : 0) | (q.hdr.cd() ? 4 : 0)));
    return k;
}

std::optional<size_t> dns_cache::lookup(const std::string& key, int64_t now_ms, uint16_t id, std::span<std::byte> out) {
    auto it = _entries.find(key);
    if (it == _entries.end()) {
        return std::nullopt;
    }
    entry& e = it->second;
    if (now_ms >= e.expires_ms) {
        _entries.erase(it);
        return std::nullopt;
    }
    if (out.size() < e.bytes.size()) {
        return std::nullopt;
    }
    std::memcpy(out.data(), e.bytes.data(), e.bytes.size());
    auto msg = out.first(e.bytes.size());
    dns::set_message_id(msg, id);
    if (!dns::decrement_ttls(msg, static_cast<uint32_t>((now_ms - e.stored_ms) / 1000))) {
        _entries.erase(it);
        return std::nullopt;
    }
    return e.bytes.size();
}

void dns_cache::insert(const std::string& key, std::span<const std::byte> resp, int64_t now_ms) {
    auto ttl = dns::response_cache_ttl(resp, 0, _max_ttl);
    if (ttl.status != dns::ttl_status::cacheable || ttl.ttl == 0 || _max == 0) {
        return;
    }
    if (!_entries.count(key) && _entries.size() >= _max) {
        make_room(now_ms);
    }
    entry& e = _entries[key];
    e.bytes.assign(resp.begin(), resp.end());
    e.stored_ms = now_ms;
    e.expires_ms = now_ms + int64_t(ttl.ttl) * 1000;
}

void dns_cache::make_room(int64_t now_ms) {
    std::erase_if(_entries, [&](const auto& kv) { return now_ms >= kv.second.expires_ms; });
    while (_entries.size() >= _max) {
        auto oldest = std::min_element(_entries.begin(), _entries.end(), [](const auto& a, const auto& b) {
            return a.second.expires_ms < b.second.expires_ms;
        });
        _entries.erase(oldest);
    }
}

} // namespace zt::endpoint
