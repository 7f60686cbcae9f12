// mm.hpp — a header-only C++17 wrapper over libmm's C API (include/mm.h): RAII handles
// (std::unique_ptr with the library's free functions), exceptions carrying the status and
// mm_last_error(), std::string_view in, std::string out.
//
// `make install` puts it beside mm.h (#include <mm.hpp>). Being header-only it compiles into
// your program and is not part of the library's ABI: mm.h is the stable interface.
#ifndef MM_HPP
#define MM_HPP

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mm.h"

namespace mm {

// A failed libmm call: status() is the mm_status, what() the detail from mm_last_error().
class error : public std::runtime_error {
public:
    error(mm_status status, const std::string &detail)
        : std::runtime_error(std::string(mm_status_str(status)) + ": " + detail), status_(status)
    {
    }
    mm_status status() const noexcept { return status_; }

private:
    mm_status status_;
};

inline void check(mm_status status)
{
    if (status != MM_OK)
        throw error(status, mm_last_error());
}

// unique_ptr deleter calling the library's free function for T.
template <class T, void (*Free)(T *)>
struct deleter {
    void operator()(T *p) const noexcept { Free(p); }
};

// The options bag. Setting a key of the wrong type or out of range throws mm::error.
class options {
public:
    // progress(stage, done, total) -> true to stop the operation (it then throws MM_ERR_CANCELLED)
    using progress_fn = std::function<bool(mm_progress_stage, std::uint64_t, std::uint64_t)>;

    options()
    {
        mm_options *o;
        check(mm_options_create(&o));
        ptr_.reset(o);
    }
    options(const options &other) : progress_(other.progress_)
    {
        mm_options *o;
        check(mm_options_copy(other.get(), &o));
        ptr_.reset(o);
    }
    options(options &&) noexcept = default;
    options &operator=(options other) noexcept
    {
        std::swap(ptr_, other.ptr_);
        std::swap(progress_, other.progress_);
        return *this;
    }

    options &set(mm_opt key, std::int64_t value)
    {
        check(mm_options_set_int(get(), key, value));
        return *this;
    }
    options &set(mm_opt key, int value) { return set(key, static_cast<std::int64_t>(value)); }
    options &set(mm_opt key, double value)
    {
        check(mm_options_set_float(get(), key, value));
        return *this;
    }
    options &set(mm_opt key, const std::string &value)
    {
        check(mm_options_set_string(get(), key, value.c_str()));
        return *this;
    }
    std::int64_t get_int(mm_opt key) const
    {
        std::int64_t v;
        check(mm_options_get_int(get(), key, &v));
        return v;
    }
    double get_float(mm_opt key) const
    {
        double v;
        check(mm_options_get_float(get(), key, &v));
        return v;
    }

    // The function lives on the heap, shared with copies, so the pointer given to the library
    // stays valid when this object moves.
    options &on_progress(progress_fn fn)
    {
        progress_ = fn ? std::make_shared<progress_fn>(std::move(fn)) : nullptr;
        check(mm_options_set_progress(get(), progress_ ? &call_progress : nullptr, progress_.get()));
        return *this;
    }

    mm_options *get() const noexcept { return ptr_.get(); }

private:
    static int call_progress(void *user, mm_progress_stage stage, std::uint64_t done,
                             std::uint64_t total)
    {
        try {
            return (*static_cast<progress_fn *>(user))(stage, done, total) ? 1 : 0;
        } catch (...) {
            return 1; // never let an exception cross the C library
        }
    }

    std::unique_ptr<mm_options, deleter<mm_options, mm_options_free>> ptr_;
    std::shared_ptr<progress_fn> progress_;
};

// A loaded model (shareable, read-only). Sessions keep their own reference in C.
class model {
public:
    model(const std::string &path, const std::string &mmproj = {}, const options *opts = nullptr)
    {
        mm_model *m;
        check(mm_model_load(path.c_str(), mmproj.empty() ? nullptr : mmproj.c_str(),
                            opts ? opts->get() : nullptr, &m));
        ptr_.reset(m);
    }
    mm_model *get() const noexcept { return ptr_.get(); }

    // Token ids of UTF-8 text; flags: mm_tokenize_flags.
    std::vector<std::int32_t> tokenize(std::string_view text,
                                       unsigned flags = MM_TOKENIZE_ADD_SPECIAL) const
    {
        std::vector<std::int32_t> ids(text.size() + 8);
        std::size_t n = 0;
        mm_status st = mm_tokenize(get(), text.data(), text.size(), flags, ids.data(), ids.size(), &n);
        if (st == MM_ERR_ARG && n > ids.size()) { // the first guess was too small
            ids.resize(n);
            st = mm_tokenize(get(), text.data(), text.size(), flags, ids.data(), ids.size(), &n);
        }
        check(st);
        ids.resize(n);
        return ids;
    }

    std::string detokenize(const std::vector<std::int32_t> &ids, unsigned flags = 0) const
    {
        std::string text(8 * ids.size() + 16, '\0');
        std::size_t n = 0;
        mm_status st = mm_detokenize(get(), ids.data(), ids.size(), flags, text.data(), text.size(), &n);
        if (st == MM_ERR_ARG && n >= text.size()) {
            text.resize(n + 1);
            st = mm_detokenize(get(), ids.data(), ids.size(), flags, text.data(), text.size(), &n);
        }
        check(st);
        text.resize(n);
        return text;
    }

private:
    std::unique_ptr<mm_model, deleter<mm_model, mm_model_free>> ptr_;
};

// A decoded picture (RGB8), from a file, from encoded bytes, or copied from pixels.
class image {
public:
    static image open(const std::string &path, const options *opts = nullptr)
    {
        mm_image *im;
        check(mm_image_load_file(path.c_str(), opts ? opts->get() : nullptr, &im));
        return image(im);
    }
    static image from_bytes(const void *data, std::size_t size, const options *opts = nullptr)
    {
        mm_image *im;
        check(mm_image_load_memory(data, size, opts ? opts->get() : nullptr, &im));
        return image(im);
    }
    static image from_pixels(const std::uint8_t *pixels, int width, int height, std::size_t stride,
                             mm_pixel_format format = MM_PIXEL_RGB8)
    {
        mm_image *im;
        check(mm_image_from_pixels(pixels, width, height, stride, format, &im));
        return image(im);
    }
    int width() const noexcept { return mm_image_width(get()); }
    int height() const noexcept { return mm_image_height(get()); }
    const mm_image *get() const noexcept { return ptr_.get(); }

private:
    explicit image(mm_image *im) : ptr_(im) {}
    std::unique_ptr<mm_image, deleter<mm_image, mm_image_free>> ptr_;
};

// An audio clip (mono float samples at its own rate), from a WAV file or bytes, or copied from
// float samples (interleaved when channels > 1, averaged into one).
class audio {
public:
    static audio open(const std::string &path, const options *opts = nullptr)
    {
        mm_audio *a;
        check(mm_audio_load_file(path.c_str(), opts ? opts->get() : nullptr, &a));
        return audio(a);
    }
    static audio from_bytes(const void *data, std::size_t size, const options *opts = nullptr)
    {
        mm_audio *a;
        check(mm_audio_load_memory(data, size, opts ? opts->get() : nullptr, &a));
        return audio(a);
    }
    static audio from_samples(const float *samples, std::size_t n_frames, int sample_rate,
                              int channels = 1)
    {
        mm_audio *a;
        check(mm_audio_from_samples(samples, n_frames, channels, sample_rate, &a));
        return audio(a);
    }
    int sample_rate() const noexcept { return mm_audio_sample_rate(get()); }
    std::size_t size() const noexcept { return mm_audio_n_samples(get()); }
    const float *samples() const noexcept { return mm_audio_samples(get()); }
    const mm_audio *get() const noexcept { return ptr_.get(); }

private:
    explicit audio(mm_audio *a) : ptr_(a) {}
    std::unique_ptr<mm_audio, deleter<mm_audio, mm_audio_free>> ptr_;
};

// One image or clip of a message (borrowed: the image or clip must outlive it).
class media {
public:
    media(const image &im) : ptr_(make(mm_media_from_image, im.get())) {}
    media(const audio &a) : ptr_(make(mm_media_from_audio, a.get())) {}
    // Positions the item takes in a message of model m.
    std::size_t n_tokens(const model &m) const
    {
        std::size_t n;
        check(mm_media_n_tokens(m.get(), get(), &n));
        return n;
    }
    const mm_media *get() const noexcept { return ptr_.get(); }

private:
    template <class T>
    static mm_media *make(mm_status (*from)(const T *, mm_media **), const T *source)
    {
        mm_media *m;
        check(from(source, &m));
        return m;
    }
    std::unique_ptr<mm_media, deleter<mm_media, mm_media_free>> ptr_;
};

// Image embeddings: n_tokens() rows of n_embd() floats, owned by the library.
class embeddings {
public:
    explicit embeddings(mm_embeddings *e) : ptr_(e) {}
    std::size_t n_tokens() const noexcept { return mm_embeddings_n_tokens(get()); }
    std::size_t n_embd() const noexcept { return mm_embeddings_n_embd(get()); }
    const float *data() const noexcept { return mm_embeddings_data(get()); }
    const mm_embeddings *get() const noexcept { return ptr_.get(); }

private:
    std::unique_ptr<mm_embeddings, deleter<mm_embeddings, mm_embeddings_free>> ptr_;
};

// One conversation on a model; one thread at a time (cancel() from any thread).
class session {
public:
    explicit session(model &m, const options *opts = nullptr)
    {
        mm_session *s;
        check(mm_session_create(m.get(), opts ? opts->get() : nullptr, &s));
        ptr_.reset(s);
    }

    // A chat message in the session's template ("system", "user", "assistant").
    session &add_message(const std::string &role, std::string_view text)
    {
        check(mm_session_add_message(get(), role.c_str(), text.data(), text.size()));
        return *this;
    }
    // The same with encoded images at the text's "<image>" markers, or at its start when it
    // has none.
    session &add_message(const std::string &role, std::string_view text,
                         const std::vector<const embeddings *> &images)
    {
        std::vector<const mm_embeddings *> handles;
        for (const embeddings *e : images)
            handles.push_back(e->get());
        check(mm_session_add_message_embeddings(get(), role.c_str(), text.data(), text.size(),
                                                handles.data(), handles.size()));
        return *this;
    }
    // The same with pictures, encoded by the session once it knows the message fits.
    session &add_message(const std::string &role, std::string_view text,
                         const std::vector<const image *> &images)
    {
        std::vector<const mm_image *> handles;
        for (const image *im : images)
            handles.push_back(im->get());
        check(mm_session_add_message_images(get(), role.c_str(), text.data(), text.size(),
                                            handles.data(), handles.size()));
        return *this;
    }
    // The same with images and clips, at the text's "<image>" / "<audio>" / "<media>"
    // markers (or at its start), encoded by the session once it knows the message fits.
    session &add_message(const std::string &role, std::string_view text,
                         const std::vector<const media *> &items)
    {
        std::vector<const mm_media *> handles;
        for (const media *m : items)
            handles.push_back(m->get());
        check(mm_session_add_message_media(get(), role.c_str(), text.data(), text.size(),
                                           handles.data(), handles.size()));
        return *this;
    }
    // A conversation in the OpenAI or Anthropic JSON shape (images and WAV clips inline).
    session &add_messages_json(std::string_view json, const options *opts = nullptr)
    {
        check(mm_session_add_messages_json(get(), json.data(), json.size(),
                                           opts ? opts->get() : nullptr));
        return *this;
    }

    // Generate, calling on_piece(text) for each piece; return false from it to stop.
    void generate(const std::function<bool(std::string_view)> &on_piece,
                  const options *opts = nullptr)
    {
        struct call {
            static int piece(void *user, const char *text, std::size_t len)
            {
                try {
                    return (*static_cast<const std::function<bool(std::string_view)> *>(user))(
                               std::string_view(text, len)) ? 0 : 1;
                } catch (...) {
                    return 1; // never let an exception cross the C library
                }
            }
        };
        check(mm_session_generate(get(), opts ? opts->get() : nullptr, &call::piece,
                                  const_cast<std::function<bool(std::string_view)> *>(&on_piece)));
    }
    // The whole answer at once.
    std::string generate(const options *opts = nullptr)
    {
        std::string out;
        generate([&out](std::string_view piece) { out += piece; return true; }, opts);
        return out;
    }

    void cancel() noexcept { mm_session_cancel(get()); }
    void reset() noexcept { mm_session_reset(get()); }
    mm_stop_reason stop_reason() const noexcept { return mm_session_stop_reason(get()); }
    int n_past() const noexcept { return mm_session_n_past(get()); }
    mm_session *get() const noexcept { return ptr_.get(); }

private:
    std::unique_ptr<mm_session, deleter<mm_session, mm_session_free>> ptr_;
};

// Image embeddings of `im` from the model's vision tower (preprocessed as its file says).
inline embeddings encode(const model &m, const image &im, const options *opts = nullptr)
{
    mm_embeddings *e;
    check(mm_image_encode(m.get(), im.get(), opts ? opts->get() : nullptr, &e));
    return embeddings(e);
}

inline std::string version() { return mm_version_string(); }

} // namespace mm

#endif
