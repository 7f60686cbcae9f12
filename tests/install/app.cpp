// The C++ wrapper as installed: tests/install/run.sh compiles this against <mm.hpp> from the
// install prefix with nothing but pkg-config. It checks the wrapper reports the loaded library's
// version, that a bad option value becomes an mm::error carrying MM_ERR_ARG and the library's
// message, and that a good one reads back.
#include <mm.hpp>

#include <cstdio>
#include <cstring>

int main()
{
    if (mm::version() != mm_version_string()) {
        std::fprintf(stderr, "mm::version() %s, library %s\n", mm::version().c_str(),
                     mm_version_string());
        return 1;
    }
    mm::options options;
    try {
        options.set(MM_OPT_N_CTX, std::int64_t{-5});
        std::fprintf(stderr, "n_ctx -5 was accepted\n");
        return 1;
    } catch (const mm::error &e) {
        if (e.status() != MM_ERR_ARG || std::strstr(e.what(), "n_ctx") == nullptr) {
            std::fprintf(stderr, "unexpected error: %s\n", e.what());
            return 1;
        }
    }
    options.set(MM_OPT_N_CTX, std::int64_t{4096});
    std::int64_t n_ctx = options.get_int(MM_OPT_N_CTX);
    if (n_ctx != 4096) {
        std::fprintf(stderr, "n_ctx reads back as %lld\n", static_cast<long long>(n_ctx));
        return 1;
    }
    std::printf("libmm %s through the installed mm.hpp: ok\n", mm::version().c_str());
    return 0;
}
