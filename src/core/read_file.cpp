#include <mmtune/core/errors.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace mmtune {
namespace {

// "3072 MiB" for sizes of a MiB and more, else bytes: a bound of 16 MiB and a file of 16 MiB + 1 B
// must not read alike.
std::string size_text(std::uint64_t bytes) {
  if (bytes % (std::uint64_t{1} << 20) == 0 || bytes >= (std::uint64_t{64} << 20))
    return cat(bytes >> 20, " MiB");
  return cat(bytes, " bytes");
}

[[noreturn]] void report(const std::filesystem::path& path, const FileProblemHandler& fail, FileProblem p) {
  if (fail) fail(p);
  throw Error(path.string() + ": " + p.message);
}

}  // namespace

std::string read_whole_file(const std::filesystem::path& path, std::uint64_t max_bytes, std::string_view what,
                            const FileProblemHandler& fail) {
  namespace fs = std::filesystem;
  using K = FileProblem::Kind;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status)) {
    if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
      report(path, fail, {K::kUnreadable, "cannot read: " + ec.message()});
    report(path, fail, {K::kMissing, "not found"});
  }
  if (fs::is_directory(status)) report(path, fail, {K::kNotAFile, "is a directory, not a file"});
  const auto too_large = [&](const std::string& message) { report(path, fail, {K::kTooLarge, message}); };
  std::string bytes;
  if (fs::is_regular_file(status)) {
    const std::uintmax_t size = fs::file_size(path, ec);
    if (ec) report(path, fail, {K::kUnreadable, "cannot read: " + ec.message()});
    if (size > max_bytes)
      too_large(cat("is ", size_text(size), ", more than ", what, " can be (", size_text(max_bytes), ")"));
    bytes.reserve(static_cast<std::size_t>(size));
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) report(path, fail, {K::kUnreadable, cat("cannot read: ", std::strerror(errno))});
  // read in chunks up to max_bytes + 1: a file that grew since its size was taken, or a pipe, is
  // bounded all the same
  char chunk[1 << 16];
  while (f) {
    f.read(chunk, sizeof chunk);
    const auto n = static_cast<std::size_t>(f.gcount());
    if (bytes.size() + n > max_bytes)
      too_large(cat("has more than ", size_text(max_bytes), ", the most ", what, " can be"));
    bytes.append(chunk, n);
  }
  if (f.bad()) report(path, fail, {K::kUnreadable, cat("cannot read: ", std::strerror(errno))});
  return bytes;
}

std::string read_checkpoint_file(const std::filesystem::path& path, const std::string& hint,
                                 std::uint64_t max_bytes, std::string_view what) {
  return read_whole_file(path, max_bytes, what,
                         [&](const FileProblem& p) { throw CheckpointError(path.string(), p.message, hint); });
}

}  // namespace mmtune
