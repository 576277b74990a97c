#include <mmtune/core/atomic_file.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

namespace mmtune {

void write_file_atomically(const std::string& path, std::string_view bytes, const std::string& hint) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  const fs::path tmp = target.parent_path() / cat(".", target.filename().string(), ".tmp.", ::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.flush();
    if (!f) {
      fs::remove(tmp, ec);
      throw Error(cat("cannot write ", path), hint);
    }
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    const std::string why = ec.message();
    fs::remove(tmp, ec);
    throw Error(cat("cannot rename ", tmp.string(), " to ", path, ": ", why), hint);
  }
}

}  // namespace mmtune
