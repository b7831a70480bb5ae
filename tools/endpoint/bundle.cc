// Bundle loading and checks (see bundle.hh).
#include "tools/endpoint/bundle.hh"

#include "common/tls/tls.hh"
#include "common/util/fs.hh"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include <fmt/format.h>
#include <simdjson.h>

namespace zt::endpoint {
namespace {

std::string date_text(int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

/// A file name from endpoint.json: a plain name inside the bundle directory.
bool plain_file_name(std::string_view n) {
    return !n.empty() && n.find('/') == std::string_view::npos && n != "." && n != "..";
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

} // namespace

std::optional<int64_t> parse_asn1_time(uint8_t type, std::string_view text) {
    size_t year_digits = type == 0x17 ? 2 : type == 0x18 ? 4 : 0;
    if (year_digits == 0 || text.size() != year_digits + 11 || text.back() != 'Z') {
        return std::nullopt;
    }
    for (size_t i = 0; i + 1 < text.size(); ++i) {
        if (text[i] < '0' || text[i] > '9') {
            return std::nullopt;
        }
    }
    auto num = [&](size_t at, size_t n) {
        int v = 0;
        for (size_t i = 0; i < n; ++i) {
            v = v * 10 + (text[at + i] - '0');
        }
        return v;
    };
    int year = num(0, year_digits);
    if (year_digits == 2) {
        year += year < 50 ? 2000 : 1900; // RFC 5280 §4.1.2.5.1
    }
    size_t p = year_digits;
    int mon = num(p, 2), day = num(p + 2, 2), hh = num(p + 4, 2), mm = num(p + 6, 2), ss = num(p + 8, 2);
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) {
        return std::nullopt;
    }
    return days_from_civil(year, unsigned(mon), unsigned(day)) * 86400 + hh * 3600 + mm * 60 + ss;
}

bundle_result load_bundle(const std::string& dir, int64_t now) {
    bundle_result r;
    auto fail = [&](std::string msg) {
        r.error = std::move(msg);
        r.value.reset();
        return std::move(r);
    };
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
        return fail(fmt::format("bundle {}: {}", dir, std::strerror(errno)));
    }
    if (!S_ISDIR(st.st_mode)) {
        return fail(fmt::format("bundle {}: not a directory", dir));
    }
    bundle b;
    b.dir = dir;
    const std::string json_path = dir + "/endpoint.json";
    std::string text, err;
    if (!fs::read_file(json_path, text, err)) {
        return fail(fmt::format("bundle: {}", err));
    }
    simdjson::dom::parser parser;
    simdjson::padded_string padded(text);
    simdjson::dom::element root;
    if (auto e = parser.parse(padded).get(root); e) {
        return fail(fmt::format("{}: not valid JSON: {}", json_path, simdjson::error_message(e)));
    }
    auto str = [&](const char* key, std::string& out, bool required, const char* dflt = "") -> bool {
        std::string_view v;
        auto field = root[key];
        if (field.error() == simdjson::NO_SUCH_FIELD && !required) {
            out = dflt;
            return true;
        }
        if (field.get_string().get(v)) {
            r.error = fmt::format("{}: .{}: {}", json_path, key, required ? "missing or not a string" : "not a string");
            return false;
        }
        out.assign(v);
        return true;
    };
    std::string kind, cert_file, key_file, ca_file;
    if (!str("cn", b.cn, true) || !str("kind", kind, true) || !str("server_name", b.server_name, true) ||
        !str("name", b.name, false) || !str("cert", cert_file, false, "cert.pem") ||
        !str("key", key_file, false, "key.pem") || !str("ca", ca_file, false, "ca.crt")) {
        return fail(r.error);
    }
    if (kind != "client" && kind != "service") {
        return fail(fmt::format("{}: .kind: \"{}\" is neither client nor service", json_path, kind));
    }
    b.service = kind == "service";
    if (b.cn.empty() || b.server_name.empty()) {
        return fail(fmt::format("{}: .cn and .server_name must not be empty", json_path));
    }
    for (auto [key, list] : {std::pair{"dot_servers", &b.dot_servers}, std::pair{"proxies", &b.proxies}}) {
        simdjson::dom::array arr;
        if (root[key].get_array().get(arr)) {
            return fail(fmt::format("{}: .{}: missing or not an array", json_path, key));
        }
        size_t i = 0;
        for (auto item : arr) {
            std::string_view v;
            net::address a;
            if (item.get_string().get(v) || !net::parse_address(v, a)) {
                return fail(fmt::format("{}: .{}[{}]: expected \"ADDR:PORT\"", json_path, key, i));
            }
            list->push_back(a);
            ++i;
        }
    }
    if (b.dot_servers.empty()) {
        return fail(fmt::format("{}: .dot_servers: no DoT server listed", json_path));
    }
    for (const auto* f : {&cert_file, &key_file, &ca_file}) {
        if (!plain_file_name(*f)) {
            return fail(fmt::format("{}: \"{}\": expected a file name inside the bundle", json_path, *f));
        }
    }
    // The key: ours alone. Checked before reading it, as ssh does.
    const std::string key_path = dir + "/" + key_file;
    if (::stat(key_path.c_str(), &st) != 0) {
        return fail(fmt::format("bundle: {}: {}", key_path, std::strerror(errno)));
    }
    if ((st.st_mode & 077) != 0) {
        return fail(fmt::format("bundle: {} is readable by group or others (mode {:04o}): run chmod 600 {}", key_path,
                                st.st_mode & 07777, key_path));
    }
    for (auto [file, out] :
         {std::pair{&key_file, &b.key_pem}, std::pair{&cert_file, &b.cert_pem}, std::pair{&ca_file, &b.ca_pem}}) {
        if (!fs::read_file(dir + "/" + *file, *out, err)) {
            return fail(fmt::format("bundle: {}", err));
        }
    }
    const std::string cert_path = dir + "/" + cert_file, ca_path = dir + "/" + ca_file;
    tls::init();
    WOLFSSL_X509* x = wolfSSL_X509_load_certificate_buffer(reinterpret_cast<const unsigned char*>(b.cert_pem.data()),
                                                           static_cast<int>(b.cert_pem.size()), WOLFSSL_FILETYPE_PEM);
    if (!x) {
        return fail(fmt::format("bundle: {}: not a PEM certificate", cert_path));
    }
    std::string cn = wolfSSL_X509_get_subjectCN(x) ? wolfSSL_X509_get_subjectCN(x) : "";
    auto time_of = [](const unsigned char* t) -> std::optional<int64_t> {
        if (!t || t[1] == 0) {
            return std::nullopt;
        }
        return parse_asn1_time(t[0], std::string_view(reinterpret_cast<const char*>(t + 2), t[1]));
    };
    auto nb = time_of(wolfSSL_X509_notBefore(x));
    auto na = time_of(wolfSSL_X509_notAfter(x));
    wolfSSL_X509_free(x);
    if (!nb || !na) {
        return fail(fmt::format("bundle: {}: cannot read the validity dates", cert_path));
    }
    b.not_before = *nb;
    b.not_after = *na;
    if (cn != b.cn) {
        return fail(fmt::format("bundle: {} is for CN \"{}\" but endpoint.json says \"{}\" (mismatched bundle)",
                                cert_path, cn, b.cn));
    }
    if (now >= b.not_after) {
        return fail(fmt::format("bundle: {} expired on {}: ask for a new bundle (ztdns client add)", cert_path,
                                date_text(b.not_after)));
    }
    if (now < b.not_before) {
        return fail(
            fmt::format("bundle: {} is not valid before {} (is the clock right?)", cert_path, date_text(b.not_before)));
    }
    if (b.not_after - now < 30 * 86400) {
        r.warnings.push_back(fmt::format("{} expires on {}", cert_path, date_text(b.not_after)));
    }
    // It chains to the bundle's CA.
    WOLFSSL_CERT_MANAGER* cm = wolfSSL_CertManagerNew();
    if (!cm) {
        return fail("bundle: out of memory");
    }
    int ret = wolfSSL_CertManagerLoadCABuffer(cm, reinterpret_cast<const unsigned char*>(b.ca_pem.data()),
                                              static_cast<long>(b.ca_pem.size()), WOLFSSL_FILETYPE_PEM);
    if (ret == WOLFSSL_SUCCESS) {
        ret = wolfSSL_CertManagerVerifyBuffer(cm, reinterpret_cast<const unsigned char*>(b.cert_pem.data()),
                                              static_cast<long>(b.cert_pem.size()), WOLFSSL_FILETYPE_PEM);
        wolfSSL_CertManagerFree(cm);
        if (ret == ASN_AFTER_DATE_E) {
            return fail(fmt::format("bundle: {} has expired", cert_path));
        }
        if (ret != WOLFSSL_SUCCESS) {
            return fail(fmt::format("bundle: {} is not signed by {} (mismatched bundle: {})", cert_path, ca_path,
                                    wc_GetErrorString(ret)));
        }
    } else {
        wolfSSL_CertManagerFree(cm);
        return fail(fmt::format("bundle: {}: not a usable CA certificate", ca_path));
    }
    // The key belongs to the certificate.
    tls::context_options co;
    co.server = false;
    co.cert_pem = b.cert_pem;
    co.key_pem = b.key_pem;
    co.ca_pem = b.ca_pem;
    auto ctx = tls::context::create(co, err);
    if (!ctx.valid()) {
        return fail(fmt::format("bundle {}: {} ({}, {})", dir, err, key_path, cert_path));
    }
    r.value = std::move(b);
    return r;
}

} // namespace zt::endpoint
