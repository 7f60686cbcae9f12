// mm-describe-cpp: load a model through the C++ wrapper (examples/cpp/mm.hpp), with a progress
// line on a terminal, and report what was loaded.
//   mm-describe-cpp MODEL.gguf [MMPROJ.gguf]
#include <cstdio>
#include <iostream>

#include <unistd.h>

#include "mm.hpp"

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        std::cerr << "usage: " << argv[0] << " MODEL.gguf [MMPROJ.gguf]\n"
                  << "libmm " << mm::version() << "\n";
        return 2;
    }
    try {
        mm::options opts;
        if (isatty(STDERR_FILENO))
            opts.on_progress([](mm_progress_stage, std::uint64_t done, std::uint64_t total) {
                std::fprintf(stderr, "\rloading: %3d%%", total ? int(100 * done / total) : 100);
                if (done == total)
                    std::fputc('\n', stderr);
                return false;
            });
        mm::model model(argv[1], argc > 2 ? argv[2] : "", &opts);
        std::cout << "loaded " << argv[1] << (argc > 2 ? std::string(" + ") + argv[2] : "")
                  << "\n";
    } catch (const mm::error &e) {
        std::cerr << argv[0] << ": " << e.what() << "\n";
        return 1;
    }
    return 0;
}
