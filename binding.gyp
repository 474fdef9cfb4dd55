# node-gyp entry point. The addon is a CMake project (ggml is built from source by CMake), so this
# target delegates: its action runs the same cmake-js build as `npm install` and the first-use
# build, in its own CMake folder (build/cmake, so CMake's Makefile does not clash with node-gyp's
# build/Makefile), then places lm_infinite.node in node-gyp's build/Release, where lib/native looks.
{
  "targets": [
    {
      "target_name": "lm_infinite",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_js_build",
          "inputs": ["CMakeLists.txt", "scripts/build-native.cjs"],
          "outputs": ["<(PRODUCT_DIR)/lm_infinite.node"],
          "action": ["node", "scripts/build-native.cjs", "--out", "build/cmake", "--copy-to", "<(PRODUCT_DIR)"]
        }
      ]
    }
  ]
}
