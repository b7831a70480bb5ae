// Replays a fuzz target's corpus (every file in the given directories, or the
// given files) through LLVMFuzzerTestOneInput. Linked instead of libFuzzer in
// normal builds, so each corpus runs as a regression test, also under ASan.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

int run_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "cannot read %s\n", path.c_str());
        return 1;
    }
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Copy into an exact-size heap buffer so ASan sees reads past the end.
    std::vector<uint8_t> exact(bytes.begin(), bytes.end());
    LLVMFuzzerTestOneInput(exact.data(), exact.size());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    size_t files = 0;
    int bad = 0;
    for (int i = 1; i < argc; ++i) {
        struct stat st {};
        if (stat(argv[i], &st) != 0) {
            std::fprintf(stderr, "no such corpus: %s\n", argv[i]);
            return 1;
        }
        if (S_ISDIR(st.st_mode)) {
            DIR* d = opendir(argv[i]);
            while (dirent* e = d ? readdir(d) : nullptr) {
                if (e->d_name[0] == '.') {
                    continue;
                }
                bad |= run_file(std::string(argv[i]) + "/" + e->d_name);
                ++files;
            }
            if (d) {
                closedir(d);
            }
        } else {
            bad |= run_file(argv[i]);
            ++files;
        }
    }
    std::printf("replayed %zu inputs\n", files);
    if (files == 0) {
        std::fprintf(stderr, "empty corpus\n");
        return 1;
    }
    return bad;
}
