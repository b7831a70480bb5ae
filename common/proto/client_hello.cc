// TLS ClientHello sniffer: see client_hello.hh. The hello is read in place through a cursor that steps over record
// headers, so a fragmented hello needs no reassembly buffer. Every read is checked against the bytes present, the
// current record and the hello's own length; decisions are taken on bytes already read, so a longer stream never
// changes them.
#include "common/proto/client_hello.hh"

#include <algorithm>
#include <cstring>

namespace zt::proto {
namespace {

constexpr uint8_t content_handshake = 22;
constexpr uint8_t handshake_client_hello = 1;
constexpr uint8_t sni_host_name = 0;
constexpr uint16_t tls13 = 0x0304;
constexpr size_t random_size = 32;
constexpr size_t max_session_id = 32;

// The handshake message's bytes, read across record boundaries. Sticky failure: once a read fails (not enough
// bytes, a bad record header, past the hello's end) every later read returns 0 and `ok()` is false; callers check
// `ok()` before they act on what they read.
class hello_reader {
public:
    hello_reader(std::span<const std::byte> in, const client_hello_limits& limits) noexcept
        : _p(reinterpret_cast<const uint8_t*>(in.data())), _size(in.size()), _max_records(limits.max_records) {}

    bool ok() const noexcept { return _status == tls_status::found; }
    tls_status status() const noexcept { return _status; }
    tls_error error() const noexcept { return _error; }
    size_t pos() const noexcept { return _pos; }
    /// Handshake-message bytes read so far.
    size_t offset() const noexcept { return _offset; }
    /// With need_more: the stream size below which the answer cannot change.
    size_t needed() const noexcept { return _needed; }
    /// The handshake message's end, once its length is known (for `needed`).
    void message_end(size_t end) noexcept { _message_end = end; }
    /// Reads past this handshake-message offset fail with `_bound_error`.
    void bound(size_t end, tls_error e) noexcept {
        _end = end;
        _bound_error = e;
    }

    void fail(tls_status s, tls_error e) noexcept {
        if (ok()) {
            _status = s;
            _error = e;
        }
    }

    uint32_t u8() noexcept { return read_be(1); }
    uint32_t u16() noexcept { return read_be(2); }
    uint32_t u24() noexcept { return read_be(3); }

    void skip(size_t n) noexcept {
        if (in_record(n)) {
            advance(n);
            return;
        }
        if (_offset + n > _end) {
            fail(tls_status::malformed, _bound_error);
            return;
        }
        while (n > 0 && ok()) {
            if (!ensure(1)) {
                return;
            }
            const size_t take = std::min({n, _left, _size - _pos});
            advance(take);
            n -= take;
        }
    }

    void copy(char* out, size_t n) noexcept {
        if (in_record(n)) {
            std::memcpy(out, _p + _pos, n);
            advance(n);
            return;
        }
        for (size_t i = 0; i < n && ok(); ++i) {
            out[i] = static_cast<char>(u8());
        }
    }

    /// The next n bytes when they are present and inside the current record; else empty.
    std::span<const std::byte> contiguous(size_t n) const noexcept {
        if (!ok() || n > _left || n > _size - _pos || _offset + n > _end) {
            return {};
        }
        return std::as_bytes(std::span(_p + _pos, n));
    }

private:
    // The common case, checked once per field: n bytes present, inside the current record and the bound.
    bool in_record(size_t n) const noexcept { return ok() && n <= _left && n <= _size - _pos && _offset + n <= _end; }
    void advance(size_t n) noexcept {
        _pos += n;
        _left -= n;
        _offset += n;
    }

    uint32_t read_be(size_t n) noexcept {
        if (in_record(n)) [[likely]] {
            uint32_t v = 0;
            for (size_t i = 0; i < n; ++i) {
                v = (v << 8) | _p[_pos + i];
            }
            advance(n);
            return v;
        }
        return read_be_slow(n);
    }

    // Byte by byte across a record boundary, or up to where the bytes or the bound end.
    [[gnu::noinline]] uint32_t read_be_slow(size_t n) noexcept {
        uint32_t v = 0;
        for (size_t i = 0; i < n; ++i) {
            if (!ensure(1)) {
                return 0;
            }
            v = (v << 8) | _p[_pos];
            advance(1);
        }
        return v;
    }

    // One more byte of the message is readable: inside the bound, present, and with a record around it.
    bool ensure(size_t n) noexcept {
        if (!ok()) {
            return false;
        }
        if (_offset + n > _end) {
            fail(tls_status::malformed, _bound_error);
            return false;
        }
        if (_left == 0 && !next_record()) {
            return false;
        }
        if (_pos == _size) {
            // A complete hello needs at least the rest of this record, or of the hello if it ends first.
            const size_t hello_left = _message_end - _offset;
            fail(tls_status::need_more, tls_error::none);
            _needed = _pos + std::min(_left, std::max<size_t>(hello_left, 1));
            return false;
        }
        return true;
    }

    bool next_record() noexcept {
        // Header bytes are checked as they arrive, so a bad one is reported without waiting for the other four.
        const size_t have = std::min(_size - _pos, tls_record_header_size);
        const uint8_t* h = _p + _pos;
        if (have >= 1 && h[0] != content_handshake) {
            fail(tls_status::malformed, tls_error::bad_record);
            return false;
        }
        if (have >= 2 && h[1] != 3) {
            fail(tls_status::malformed, tls_error::bad_record);
            return false;
        }
        if (have >= 3 && h[2] > 4) {
            fail(tls_status::malformed, tls_error::bad_record);
            return false;
        }
        if (have < tls_record_header_size) {
            fail(tls_status::need_more, tls_error::none);
            _needed = _pos + tls_record_header_size + 1; // records are never empty
            return false;
        }
        const size_t len = (size_t{h[3]} << 8) | h[4];
        // RFC 8446 §5.1: no empty handshake fragments, none over 2^14.
        if (len == 0 || len > tls_max_plaintext_record) {
            fail(tls_status::malformed, tls_error::bad_record);
            return false;
        }
        if (++_records > _max_records) {
            fail(tls_status::too_long, tls_error::too_many_records);
            return false;
        }
        _pos += tls_record_header_size;
        _left = len;
        return true;
    }

    const uint8_t* _p;
    size_t _size;
    size_t _max_records;
    size_t _pos = 0;
    size_t _left = 0; // bytes of the current record not read yet
    size_t _records = 0;
    size_t _offset = 0; // handshake-message bytes read
    size_t _end = tls_handshake_header_size;
    size_t _message_end = tls_handshake_header_size;
    size_t _needed = 0;
    tls_error _bound_error = tls_error::bad_hello;
    tls_status _status = tls_status::found; // "ok" while nothing failed
    tls_error _error = tls_error::none;
};

struct seen_extensions {
    bool server_name = false;
    bool alpn = false;
    bool supported_versions = false;
    bool ech = false;
};

// server_name (RFC 6066 §3): ServerNameList <1..2^16-1> of {NameType, HostName <1..2^16-1>}; at most one host_name.
void read_server_name(hello_reader& rd, size_t ext_size, std::span<char, name_buffer_size> name_buf,
                      client_hello_result& r) noexcept {
    const size_t list = rd.u16();
    if (!rd.ok()) {
        return;
    }
    if (list == 0 || list + 2 != ext_size) {
        rd.fail(tls_status::malformed, tls_error::bad_sni);
        return;
    }
    const size_t list_end = rd.offset() + list;
    while (rd.ok() && rd.offset() < list_end) {
        if (list_end - rd.offset() < 3) {
            rd.fail(tls_status::malformed, tls_error::bad_sni);
            return;
        }
        const uint32_t type = rd.u8();
        const size_t size = rd.u16();
        if (!rd.ok()) {
            return;
        }
        if (size == 0 || size > list_end - rd.offset()) {
            rd.fail(tls_status::malformed, tls_error::bad_sni);
            return;
        }
        if (type != sni_host_name) {
            rd.skip(size);
            continue;
        }
        // 253 bytes and a trailing dot at most; a second host_name is forbidden (RFC 6066 §3).
        if (r.sni.kind != host_kind::none || size > max_name_size + 1) {
            rd.fail(tls_status::malformed, tls_error::bad_sni);
            return;
        }
        rd.copy(name_buf.data(), size);
        if (!rd.ok()) {
            return;
        }
        r.sni = normalize_host(std::string_view(name_buf.data(), size), name_buf);
        if (r.sni.kind == host_kind::none) {
            rd.fail(tls_status::malformed, tls_error::bad_sni);
            return;
        }
    }
}

// ALPN (RFC 7301 §3.1): ProtocolNameList <2..2^16-1> of ProtocolName <1..2^8-1>.
void read_alpn(hello_reader& rd, size_t ext_size, client_hello_result& r) noexcept {
    const auto whole = rd.contiguous(ext_size);
    const size_t list = rd.u16();
    if (!rd.ok()) {
        return;
    }
    if (list < 2 || list + 2 != ext_size) {
        rd.fail(tls_status::malformed, tls_error::bad_alpn);
        return;
    }
    const size_t list_end = rd.offset() + list;
    while (rd.ok() && rd.offset() < list_end) {
        const size_t size = rd.u8();
        if (!rd.ok()) {
            return;
        }
        if (size == 0 || size > list_end - rd.offset()) {
            rd.fail(tls_status::malformed, tls_error::bad_alpn);
            return;
        }
        rd.skip(size);
    }
    r.has_alpn = true;
    if (!whole.empty()) {
        r.alpn = whole.subspan(2);
    }
}

// supported_versions (RFC 8446 §4.2.1), ClientHello form: ProtocolVersion versions<2..254>.
void read_supported_versions(hello_reader& rd, size_t ext_size, client_hello_result& r) noexcept {
    const size_t list = rd.u8();
    if (!rd.ok()) {
        return;
    }
    if (list < 2 || list % 2 != 0 || list + 1 != ext_size) {
        rd.fail(tls_status::malformed, tls_error::bad_supported_versions);
        return;
    }
    for (size_t i = 0; i < list; i += 2) {
        if (rd.u16() == tls13 && rd.ok()) {
            r.offers_tls13 = true;
        }
    }
}

bool mark(bool& seen) noexcept {
    const bool first = !seen;
    seen = true;
    return first;
}

} // namespace

client_hello_result sniff_client_hello(std::span<const std::byte> bytes, std::span<char, name_buffer_size> name_buf,
                                       const client_hello_limits& limits) noexcept {
    client_hello_result r;
    // Content type 22 and major version 3 are what make a stream TLS; decided on the bytes present.
    if (!bytes.empty() && std::to_integer<uint8_t>(bytes[0]) != content_handshake) {
        r.status = tls_status::not_tls;
        return r;
    }
    if (bytes.size() >= 2 && std::to_integer<uint8_t>(bytes[1]) != 3) {
        r.status = tls_status::not_tls;
        return r;
    }

    hello_reader rd(bytes, limits);
    // An unfinished or failed hello reports nothing it may have read on the way.
    const auto stop = [&]() noexcept {
        client_hello_result failed;
        failed.status = rd.status();
        failed.error = rd.error();
        if (failed.status == tls_status::need_more) {
            failed.needed = std::max(rd.needed(), bytes.size() + 1);
        }
        return failed;
    };

    // Handshake header: msg_type, uint24 length.
    const uint32_t type = rd.u8();
    if (rd.ok() && type != handshake_client_hello) {
        rd.fail(tls_status::malformed, tls_error::not_client_hello);
    }
    const size_t length = rd.u24();
    if (!rd.ok()) {
        return stop();
    }
    if (length > limits.max_hello_size) {
        rd.fail(tls_status::too_long, tls_error::hello_too_long);
        return stop();
    }
    const size_t end = tls_handshake_header_size + length;
    rd.bound(end, tls_error::bad_hello);
    rd.message_end(end);

    r.legacy_version = static_cast<uint16_t>(rd.u16());
    if (rd.ok() && (r.legacy_version >> 8) != 3) {
        rd.fail(tls_status::malformed, tls_error::bad_hello);
    }
    rd.skip(random_size);
    const size_t session_id = rd.u8();
    if (rd.ok() && session_id > max_session_id) {
        rd.fail(tls_status::malformed, tls_error::bad_hello);
    }
    rd.skip(session_id);
    const size_t suites = rd.u16();
    if (rd.ok() && (suites < 2 || suites % 2 != 0)) {
        rd.fail(tls_status::malformed, tls_error::bad_hello);
    }
    rd.skip(suites);
    const size_t compressions = rd.u8();
    if (rd.ok() && compressions == 0) {
        rd.fail(tls_status::malformed, tls_error::bad_hello);
    }
    rd.skip(compressions);
    if (!rd.ok()) {
        return stop();
    }

    // Extensions are optional before TLS 1.3 (RFC 5246 §7.4.1.2); when present they fill the hello exactly.
    if (rd.offset() < end) {
        rd.bound(end, tls_error::bad_extensions);
        const size_t extensions = rd.u16();
        if (rd.ok() && rd.offset() + extensions != end) {
            rd.fail(tls_status::malformed, tls_error::bad_extensions);
        }
        seen_extensions seen;
        while (rd.ok() && rd.offset() < end) {
            const uint32_t ext = rd.u16();
            const size_t size = rd.u16();
            if (!rd.ok()) {
                break;
            }
            if (size > end - rd.offset()) {
                rd.fail(tls_status::malformed, tls_error::bad_extensions);
                break;
            }
            const size_t ext_end = rd.offset() + size;
            // Each reader below sees the extension's end as the end of the hello.
            rd.bound(ext_end, tls_error::bad_extensions);
            switch (ext) {
            case tls_ext::server_name:
                if (!mark(seen.server_name)) {
                    rd.fail(tls_status::malformed, tls_error::duplicate_extension);
                }
                rd.bound(ext_end, tls_error::bad_sni);
                read_server_name(rd, size, name_buf, r);
                break;
            case tls_ext::alpn:
                if (!mark(seen.alpn)) {
                    rd.fail(tls_status::malformed, tls_error::duplicate_extension);
                }
                rd.bound(ext_end, tls_error::bad_alpn);
                read_alpn(rd, size, r);
                break;
            case tls_ext::supported_versions:
                if (!mark(seen.supported_versions)) {
                    rd.fail(tls_status::malformed, tls_error::duplicate_extension);
                }
                rd.bound(ext_end, tls_error::bad_supported_versions);
                read_supported_versions(rd, size, r);
                break;
            case tls_ext::encrypted_client_hello:
                if (!mark(seen.ech)) {
                    rd.fail(tls_status::malformed, tls_error::duplicate_extension);
                }
                r.ech = true;
                rd.skip(size);
                break;
            default:
                rd.skip(size); // GREASE and everything we do not read
                break;
            }
            if (rd.ok() && rd.offset() != ext_end) {
                rd.fail(tls_status::malformed, tls_error::bad_extensions);
            }
            rd.bound(end, tls_error::bad_extensions);
        }
    }
    if (!rd.ok()) {
        return stop();
    }
    r.hello_end = rd.pos();
    r.status = r.sni.kind == host_kind::none ? tls_status::no_sni : tls_status::found;
    return r;
}

alpn_entry next_alpn_protocol(std::span<const std::byte> alpn, size_t offset) noexcept {
    if (offset >= alpn.size()) {
        return {{}, alpn.size()};
    }
    const size_t size = std::to_integer<size_t>(alpn[offset]);
    if (size == 0 || size > alpn.size() - offset - 1) {
        return {{}, alpn.size()};
    }
    return {std::string_view(reinterpret_cast<const char*>(alpn.data()) + offset + 1, size), offset + 1 + size};
}

std::string_view to_string(tls_status v) noexcept {
    switch (v) {
    case tls_status::need_more:
        return "need_more";
    case tls_status::not_tls:
        return "not_tls";
    case tls_status::found:
        return "found";
    case tls_status::no_sni:
        return "no_sni";
    case tls_status::malformed:
        return "malformed";
    case tls_status::too_long:
        return "too_long";
    }
    return "unknown";
}

std::string_view to_string(tls_error v) noexcept {
    switch (v) {
    case tls_error::none:
        return "none";
    case tls_error::bad_record:
        return "bad_record";
    case tls_error::not_client_hello:
        return "not_client_hello";
    case tls_error::bad_hello:
        return "bad_hello";
    case tls_error::bad_extensions:
        return "bad_extensions";
    case tls_error::duplicate_extension:
        return "duplicate_extension";
    case tls_error::bad_sni:
        return "bad_sni";
    case tls_error::bad_alpn:
        return "bad_alpn";
    case tls_error::bad_supported_versions:
        return "bad_supported_versions";
    case tls_error::hello_too_long:
        return "hello_too_long";
    case tls_error::too_many_records:
        return "too_many_records";
    }
    return "unknown";
}

} // namespace zt::proto
