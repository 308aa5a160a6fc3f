{
  # The CPU kernels are compiled into the addon. The AVX2 and AVX-512 levels live in their own
  # static libraries because only those files may be built with ISA flags; the dispatcher picks
  # one at run time, so the addon loads on any x86-64 (and on arm64, where only the portable
  # level is built).
  "variables": {
    "pf_common_cflags": ["-std=c++17", "-O3", "-fvisibility=hidden", "-Wall", "-Wextra",
                         "-Wno-unused-parameter", "-Wno-maybe-uninitialized"]
  },
  "target_defaults": {
    "include_dirs": ["kernels/include"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++1y"],
    "cflags_cc": ["<@(pf_common_cflags)"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "OTHER_CPLUSPLUSFLAGS": ["-O3"]
    },
    "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
  },
  "targets": [
    {
      "target_name": "personafuse",
      "sources": [
        "native/addon.cc",
        "native/args.cc",
        "native/errors.cc",
        "native/lora_bank.cc",
        "native/info.cc",
        "native/topk_softmax.cc",
        "native/lora_moe.cc",
        "native/fold_experts.cc",
        "native/merge_experts.cc",
        "native/backend.cc",
        "native/cuda_plugin.cc",
        "native/device_tensor.cc",
        "native/cuda_options.cc",
        "native/allocator.cc",
        "kernels/cpu/bank.cc",
        "kernels/cpu/status.cc",
        "kernels/cpu/thread_pool.cc",
        "kernels/cpu/topk_softmax.cc",
        "kernels/cpu/lora_moe.cc",
        "kernels/cpu/fold_experts.cc",
        "kernels/cpu/merge_experts.cc",
        "kernels/cpu/simd/dispatch.cc",
        "kernels/cpu/simd/scalar.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      # libdl: the CUDA backend is a plugin opened at run time (native/cuda_plugin.cc), never
      # a link-time dependency, so the addon loads on machines without CUDA.
      "libraries": ["-ldl"],
      "conditions": [
        ["target_arch=='x64'", { "dependencies": ["pf_simd_avx2", "pf_simd_avx512"] }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "pf_simd_avx2",
          "type": "static_library",
          "sources": ["kernels/cpu/simd/avx2.cc"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-fPIC"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx2", "-mfma", "-mf16c"] }
        },
        {
          "target_name": "pf_simd_avx512",
          "type": "static_library",
          "sources": ["kernels/cpu/simd/avx512.cc"],
          "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mfma", "-mf16c", "-fPIC"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mfma", "-mf16c"] }
        }
      ]
    }]
  ]
}
