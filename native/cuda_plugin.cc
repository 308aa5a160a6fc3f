#include "cuda_plugin.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>

namespace pfn {
namespace {

const char* kLibName = "libpersonafuse_cuda.so";

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
std::string dirname_of(const std::string& p) {
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
}

// The addon's own file: dladdr on a symbol of this object.
std::string addon_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&cuda_plugin), &info) == 0 || info.dli_fname == nullptr) return "";
  return dirname_of(info.dli_fname);
}

// The package root is the first folder above the addon holding package.json and binding.gyp
// (build/Release/ after node-gyp, prebuilds/<platform>/ after node-gyp-build), as binding.ts
// finds it from the TypeScript side.
std::string package_root(const std::string& from) {
  std::string dir = from;
  for (int i = 0; i < 8 && !dir.empty(); i++) {
    if (is_file(dir + "/package.json") && is_file(dir + "/binding.gyp")) return dir;
    const std::string up = dirname_of(dir);
    if (up == dir) break;
    dir = up;
  }
  return "";
}

// An explicit PERSONAFUSE_CUDA_LIB is the only candidate: a wrong setting is reported, not
// quietly replaced by another build of the library.
std::vector<std::string> candidates() {
  std::vector<std::string> out;
  const char* env = std::getenv("PERSONAFUSE_CUDA_LIB");
  if (env != nullptr && *env) {
    out.push_back(is_dir(env) ? std::string(env) + "/" + kLibName : std::string(env));
    return out;
  }
  const std::string here = addon_dir();
  const std::string root = package_root(here);
  if (!root.empty()) out.push_back(root + "/build-kernels/release/" + kLibName);
  if (!here.empty()) out.push_back(here + "/" + kLibName);
  return out;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string s;
  for (size_t i = 0; i < parts.size(); i++) s += (i ? sep : "") + parts[i];
  return s;
}

// Opens the first candidate that exists; a file that exists but fails to open or speaks
// another ABI is reported (it is what the user built), not skipped silently.
void open_library(CudaPlugin& p) {
  std::vector<std::string> tried;
  for (const std::string& path : candidates()) {
    if (!is_file(path)) {
      tried.push_back(path + " (not found)");
      continue;
    }
    // RTLD_LOCAL: the library exports only pf_cuda_*, but keep it out of the global namespace
    // so it can never interpose on another module's symbols.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* err = dlerror();
      p.reason = "the CUDA library " + path + " could not be opened: " + (err ? err : "unknown dlopen error");
      return;
    }
    p.library = path;
    auto get_api = reinterpret_cast<pf_cuda_get_api_fn>(dlsym(handle, "pf_cuda_get_api"));
    const pf_cuda_api* api = get_api ? get_api(PF_CUDA_ABI_VERSION) : nullptr;
    if (api == nullptr || api->abi_version != PF_CUDA_ABI_VERSION || api->size < sizeof(pf_cuda_api)) {
      p.reason = "the CUDA library " + path + " does not speak C ABI version " + std::to_string(PF_CUDA_ABI_VERSION) +
                 " (pf_cuda_get_api " + (get_api ? "returned no table" : "is missing") +
                 "); rebuild it with `npm run build:cuda`";
      dlclose(handle);
      p.library.clear();
      return;
    }
    p.api = api;
    p.build_info = api->build_info();
    return;
  }
  const char* env = std::getenv("PERSONAFUSE_CUDA_LIB");
  if (env != nullptr && *env)
    p.reason = "PERSONAFUSE_CUDA_LIB names no CUDA library (" + join(tried, ", ") + ")";
  else
    p.reason = std::string("the CUDA library is not built (") + kLibName + " looked for at: " + join(tried, ", ") +
               "); build it with `npm run build:cuda` (needs nvcc and cmake) or set PERSONAFUSE_CUDA_LIB";
}

void query_devices(CudaPlugin& p) {
  const pf_cuda_api* api = p.api;
  int32_t count = 0;
  if (api->device_count(&count) != PF_OK) {
    p.reason = "the CUDA runtime failed to count devices: " + std::string(api->last_error());
    return;
  }
  if (count == 0) {
    // device_count is PF_OK with 0 devices when there is no driver or GPU; last_error says which.
    // Its text already starts "No CUDA device: "; lower-cased, it reads on after "but ".
    std::string why = api->last_error();
    if (why.empty()) why = "no CUDA device (the CUDA runtime counts none)";
    else if (why.rfind("No CUDA device", 0) == 0) why[0] = 'n';
    else why = "no CUDA device: " + why;
    p.reason = why;
    return;
  }
  for (int32_t d = 0; d < count; d++) {
    CudaDevice dev;
    char name[256] = {0};
    size_t free_bytes = 0;
    if (api->device_name(d, name, sizeof name) != PF_OK ||
        api->device_capability(d, &dev.major, &dev.minor) != PF_OK ||
        api->device_memory(d, &free_bytes, &dev.memory_bytes) != PF_OK) {
      p.reason = "CUDA device " + std::to_string(d) + " could not be queried: " + api->last_error();
      p.devices.clear();
      return;
    }
    dev.name = name;
    p.devices.push_back(dev);
  }
  // Everything runs on device 0 with one non-blocking stream: ordering between a transfer and
  // the op that reads it then comes from the stream, and no op waits on the legacy stream.
  if (api->set_device(p.device) != PF_OK || api->stream_create(&p.stream) != PF_OK) {
    p.reason = "CUDA device 0 is not usable: " + std::string(api->last_error());
    return;
  }
  p.available = true;
}

}  // namespace

const CudaPlugin& cuda_plugin() {
  static CudaPlugin* plugin = [] {
    auto* p = new CudaPlugin();  // never freed: finalizers may still free device memory at exit
    open_library(*p);
    if (p->api) query_devices(*p);
    return p;
  }();
  return *plugin;
}

const CudaPlugin& require_cuda(Napi::Env env, const std::string& what) {
  const CudaPlugin& p = cuda_plugin();
  if (!p.available) throw Napi::Error::New(env, what + " needs a usable CUDA device, but " + p.reason);
  return p;
}

pf_status cuda_enter(const CudaPlugin& p) { return p.api->set_device(p.device); }

std::string cuda_error(const CudaPlugin& p) {
  const char* e = p.api ? p.api->last_error() : nullptr;
  return e ? e : "";
}

}  // namespace pfn
