// mm-describe-cpp: ask a model about an image or an audio clip (or just a prompt), through the
// C++17 wrapper bindings/cpp/mm.hpp (RAII handles, exceptions), with a progress line on a
// terminal.
//   mm-describe-cpp -m MODEL.gguf [--mmproj MMPROJ.gguf] [--image IMAGE | --audio WAV] -p PROMPT
//                   [-n N]
//   mm-describe-cpp MODEL.gguf [MMPROJ.gguf] PROMPT [--image IMAGE] [-n N]
// The command line follows the C examples' convention (examples/args.h).
#include <cstdio>
#include <iostream>

#include "../args.h"
#include "mm.hpp"

int main(int argc, char **argv)
{
    try {
        mm::options opts;
        opts.set(MM_OPT_MAX_TOKENS, 128);
        const char *model_path = nullptr, *mmproj_path = nullptr, *image_path = nullptr;
        const char *audio_path = nullptr;
        const char *prompt = nullptr, *positional[3];
        const arg_spec specs[] = {
            ARG_MODEL(&model_path),
            ARG_MMPROJ(&mmproj_path),
            {"--image, -i", "FILE", ARG_TEXT, &image_path, (mm_opt)0, 0, 0, "PNG or JPEG"},
            {"--audio, -a", "FILE", ARG_TEXT, &audio_path, (mm_opt)0, 0, 0, "WAV clip"},
            {"-p, --prompt", "TEXT", ARG_TEXT, &prompt, (mm_opt)0, 0, 0, "the question"},
            ARG_N_PREDICT("128"),
            ARG_CTX,
            ARG_THREADS,
            ARG_TEMPLATE,
            ARG_SAMPLING,
        };
        arg_parser parser = {"mm-describe-cpp",
                             "-m MODEL.gguf [--mmproj MMPROJ.gguf] [--image IMAGE] -p PROMPT "
                             "[options]",
                             "Ask a model about an image (or just a prompt) through the C++ "
                             "wrapper. MODEL.gguf [MMPROJ.gguf] PROMPT may also be given "
                             "without -m, --mmproj and -p.",
                             specs, sizeof specs / sizeof specs[0], opts.get(), positional, 0, 3,
                             0};
        int rc = args_parse(&parser, argc, argv);
        if (rc >= 0)
            return rc;
        // Without the flags: MODEL [MMPROJ] PROMPT, in that order.
        int n = parser.n_positional, next = 0;
        if (!prompt && n > 0)
            prompt = positional[--n];
        if (!model_path && next < n)
            model_path = positional[next++];
        if (!mmproj_path && next < n)
            mmproj_path = positional[next++];
        if (next < n)
            return args_refuse(&parser, positional[next], "one argument too many");
        if (!model_path || !prompt)
            return args_refuse(&parser, model_path ? "-p" : "-m", "is required");
        mm_options_set_progress(opts.get(), args_progress, nullptr);

        mm::model model(model_path, mmproj_path ? mmproj_path : "", &opts);
        mm::session chat(model, &opts);
        if (audio_path) {
            mm::audio clip = mm::audio::open(audio_path, &opts);
            mm::media item(clip);
            chat.add_message("user", prompt, {&item});
        } else if (image_path) {
            mm::image picture = mm::image::open(image_path, &opts);
            chat.add_message("user", prompt, {&picture});
        } else {
            chat.add_message("user", prompt);
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
