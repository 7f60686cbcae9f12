// mm-describe-cpp: ask a model about an image or an audio clip (or just a prompt), through the
// C++17 wrapper bindings/cpp/mm.hpp (RAII handles, exceptions), with a progress line on a
// terminal.
//   mm-describe-cpp MODEL.gguf [MMPROJ.gguf] PROMPT [-i IMAGE | -a AUDIO.wav] [-n MAX_TOKENS]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <vector>

#include <unistd.h>

#include "mm.hpp"

int main(int argc, char **argv)
{
    std::vector<const char *> args;
    const char *image_path = nullptr, *audio_path = nullptr;
    long max_tokens = 128;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            max_tokens = std::atol(argv[++i]);
        else if (std::strcmp(argv[i], "-i") == 0 && i + 1 < argc)
            image_path = argv[++i];
        else if (std::strcmp(argv[i], "-a") == 0 && i + 1 < argc)
            audio_path = argv[++i];
        else
            args.push_back(argv[i]);
    }
    if (args.size() < 2 || args.size() > 3) {
        std::cerr << "usage: " << argv[0]
                  << " MODEL.gguf [MMPROJ.gguf] PROMPT [-i IMAGE | -a AUDIO.wav] [-n MAX_TOKENS]\n"
                  << "libmm " << mm::version() << "\n";
        return 2;
    }
    try {
        mm::options opts;
        opts.set(MM_OPT_MAX_TOKENS, static_cast<std::int64_t>(max_tokens));
        if (isatty(STDERR_FILENO))
            opts.on_progress([](mm_progress_stage, std::uint64_t done, std::uint64_t total) {
                if (done >= total)
                    std::fputs("\r\033[K", stderr);
                else
                    std::fprintf(stderr, "\rworking: %3d%%", int(100 * done / total));
                return false;
            });
        mm::model model(args[0], args.size() == 3 ? args[1] : "", &opts);
        mm::session chat(model, &opts);
        if (audio_path) {
            mm::audio clip = mm::audio::open(audio_path, &opts);
            mm::media item(clip);
            chat.add_message("user", args.back(), {&item});
        } else if (image_path) {
            mm::image picture = mm::image::open(image_path, &opts);
            chat.add_message("user", args.back(), {&picture});
        } else {
            chat.add_message("user", args.back());
        }
        chat.generate([](std::string_view piece) {
            std::cout << piece << std::flush;
            return true;
        });
        std::cout << "\n";
    } catch (const mm::error &e) {
        std::cerr << argv[0] << ": " << e.what() << "\n";
        return 1;
    }
    return 0;
}
