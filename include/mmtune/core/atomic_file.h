// Whole files that are never seen half-written: the bytes go to a temp file beside the target
// (".<name>.tmp.<pid>", same directory, so same file system) and are renamed over it, so a reader
// (or a run killed mid-write) sees the old file or the new one. Used for every small file the
// program writes (adapter_config.json, config.yaml, eval results); directories of files
// (checkpoints) are written into a temp directory and renamed the same way by their writers.
#pragma once

#include <string>
#include <string_view>

namespace mmtune {

/// Writes `bytes` to `path` atomically (see above), creating the parent directory if needed.
/// Throws mmtune::Error naming `path` with `hint` when it cannot be written or renamed; the temp
/// file is removed then.
void write_file_atomically(const std::string& path, std::string_view bytes,
                           const std::string& hint = "check the directory, free space and permissions");

}  // namespace mmtune
