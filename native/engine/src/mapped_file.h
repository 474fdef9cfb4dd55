// A whole file mapped read-only (POSIX mmap). The mapping is never written: pages are PROT_READ.
#pragma once
#include <cstddef>
#include <string>

namespace lmi::engine {

class MappedFile {
 public:
  // Throws Error: INVALID_ARGUMENT when the file cannot be opened, NATIVE when it cannot be mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const void* data() const { return data_; }
  size_t size() const { return size_; }

  // The bytes [begin, begin + bytes) of the mapping will not be read again (a tensor copied out of
  // it): their whole pages stop counting as resident. Advisory; a later read would fault them back in.
  void release(const void* begin, size_t bytes) const;

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace lmi::engine
