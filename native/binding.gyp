{
  "targets": [
    {
      "target_name": "pgtls_native",
      "sources": [
        "src/addon.c", "src/methods.c", "src/context-addon.c", "src/lane.c", "src/upstream-addon.c",
        "src/engine.c", "src/txrelay.c", "src/context.c", "src/upstream.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden", "-O2"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": []
    }
  ]
}
