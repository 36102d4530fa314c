// Functions of a library opened at run time (dlopen), for the optional ones that come with the
// driver or the toolkit (NVML, CUPTI): the binary must start where they are missing.
#pragma once
#include <dlfcn.h>

#include <type_traits>

namespace lh {

// Sets fn to the symbol `name` of `lib`; false (fn null) where it is missing.
template <typename Fn>
bool load_symbol(void* lib, Fn& fn, const char* name) {
  static_assert(std::is_pointer_v<Fn>, "load_symbol fills a function pointer");
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  return fn != nullptr;
}

}  // namespace lh
