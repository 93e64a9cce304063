{
  "targets": [
    {
      "target_name": "constmig_uffd",
      "sources": ["native/uffd/uffd.cc"],
      "include_dirs": ["native/common"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-cast-function-type"],
      "conditions": [
        ["OS!='linux'", { "type": "none", "sources!": ["native/uffd/uffd.cc"] }]
      ]
    },
    {
      "target_name": "constmig_datapath",
      "sources": ["native/datapath/datapath.cc"],
      "include_dirs": ["native/common"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-cast-function-type"]
    },
    {
      "target_name": "constmig_bitmap",
      "sources": ["native/bitmap/bitmap.cc"],
      "include_dirs": ["native/common"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-cast-function-type"]
    }
  ]
}
