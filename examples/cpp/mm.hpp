// mm.hpp — a header-only C++17 wrapper over libmm's C API (include/mm.h), as an example of
// using the library from C++: RAII handles (std::unique_ptr with the library's free functions),
// exceptions carrying the status and mm_last_error(), std::string_view in, std::string out.
//
// It is not part of the library's ABI: copy it into your project and change it freely. Only
// mm.h is the public interface.
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

inline std::string version() { return mm_version_string(); }

} // namespace mm

#endif
