// Safetensors reader/writer and checksum tests. The reader is also checked against byte layouts
// built by hand here, so a writer and reader that agree on a wrong format cannot both pass.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "lighthouse/checksum.h"
#include "lighthouse/safetensors.h"
#include "support/temp_dir.h"

using Catch::Contains;
using lh::DType;
namespace st = lh::safetensors;

namespace {

// Writes [u64 LE len(header)][header][data] exactly as given (no padding, no validation).
void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>((n >> (8 * i)) & 0xff));
  f << header << data;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("safetensors round trip of several dtypes and shapes with metadata", "[checkpoint]") {
  lh::testing::TempDir dir("lh-st");
  const std::string path = dir.file("model.safetensors");
  const std::vector<float> a = {1.5f, -2.f, 3.25f, 0.f, 1e-30f, -7.f};
  const std::vector<double> b = {3.141592653589793, -1e300, 2.5, 0.1};
  const std::vector<uint16_t> c = {0x3f80, 0xbf80, 0x7fc1};  // BF16 raw bits, incl. a NaN payload
  const float scalar = 42.f;
  st::write_file(path,
                 {{"w.a", DType::F32, {2, 3}, a.data()},
                  {"b", DType::F64, {4}, b.data()},
                  {"c", DType::BF16, {3}, c.data()},
                  {"scalar", DType::F32, {}, &scalar},
                  {"empty", DType::F32, {0, 5}, nullptr}},
                 {{"format", "pt"}, {"step", "7"}});

  const std::string bytes = read_all(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  CHECK((8 + n) % 8 == 0);  // data section aligned
  CHECK(bytes.size() == 8 + n + 24 + 32 + 6 + 4);

  const st::File f = st::File::open(path);
  CHECK(f.names() == std::vector<std::string>{"w.a", "b", "c", "scalar", "empty"});
  CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"step", "7"}});
  CHECK(f.info("w.a").shape == std::vector<int64_t>{2, 3});
  CHECK(f.info("c").dtype == DType::BF16);
  CHECK(f.info("scalar").shape.empty());
  CHECK(f.info("empty").nbytes == 0);

  std::vector<float> a2(6);
  std::vector<double> b2(4);
  std::vector<uint16_t> c2(3);
  float scalar2 = 0;
  f.read("w.a", DType::F32, {2, 3}, a2.data());
  f.read("b", DType::F64, {4}, b2.data());
  f.read("c", DType::BF16, {3}, c2.data());
  f.read("scalar", DType::F32, {}, &scalar2);
  f.read("empty", DType::F32, {0, 5}, nullptr);
  CHECK(std::memcmp(a2.data(), a.data(), 24) == 0);
  CHECK(std::memcmp(b2.data(), b.data(), 32) == 0);
  CHECK(c2 == c);
  CHECK(scalar2 == 42.f);
}

TEST_CASE("safetensors reads an independently hand-built file", "[checkpoint]") {
  lh::testing::TempDir dir("lh-st");
  const std::string path = dir.file("hand.safetensors");
  // Keys deliberately not in offset order, header not padded (other writers need not pad).
  const std::string header =
      R"({"__metadata__":{"k":"v"},"z":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]},)"
      R"("y":{"data_offsets":[0,8],"shape":[2],"dtype":"F32"}})";
  std::string data;
  const float y[2] = {0.5f, -3.f};
  data.append(reinterpret_cast<const char*>(y), 8);
  data += std::string("\x80\x3f\x00\x40", 4);  // BF16 1.0, 2.0 little-endian
  write_raw(path, header, data);

  const st::File f = st::File::open(path);
  CHECK(f.names() == std::vector<std::string>{"y", "z"});
  CHECK(f.metadata().at("k") == "v");
  float y2[2];
  uint16_t z2[2];
  f.read("y", DType::F32, {2}, y2);
  f.read("z", DType::BF16, {1, 2}, z2);
  CHECK(y2[0] == 0.5f);
  CHECK(y2[1] == -3.f);
  CHECK(z2[0] == 0x3f80);
  CHECK(z2[1] == 0x4000);
}

TEST_CASE("safetensors reader rejects malformed files", "[checkpoint]") {
  lh::testing::TempDir dir("lh-st");
  const std::string p = dir.file("bad.safetensors");
  const std::string d16(16, '\0');
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                  int b, int e) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
           ",\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(e) + "]}";
  };

  SECTION("shorter than 8 bytes") {
    std::ofstream(p, std::ios::binary) << "abc";
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("bad.safetensors") && Contains("shorter"));
  }
  SECTION("truncated data section") {
    const float v[4] = {1, 2, 3, 4};
    st::write_file(p, {{"t", DType::F32, {4}, v}});
    std::string bytes = read_all(p);
    std::ofstream(p, std::ios::binary) << bytes.substr(0, bytes.size() - 3);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("'t'") && Contains("exceed"));
  }
  SECTION("header length larger than the file") {
    std::ofstream(p, std::ios::binary) << std::string("\xff\0\0\0\0\0\0\0{}", 10);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("header length 255"));
  }
  SECTION("invalid JSON") {
    write_raw(p, "{\"t\":{\"dtype\":", d16);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("not valid JSON"));
  }
  SECTION("header is not an object") {
    write_raw(p, "[1,2]", "");
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("not a JSON object"));
  }
  SECTION("unknown dtype") {
    write_raw(p, "{" + entry("t", "Q7", "[4]", 0, 16) + "}", d16);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("'t'") && Contains("dtype 'Q7'"));
  }
  SECTION("negative shape") {
    write_raw(p, "{" + entry("t", "F32", "[-4]", 0, 16) + "}", d16);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("'t'") && Contains("negative"));
  }
  SECTION("overlapping offsets") {
    write_raw(p, "{" + entry("a", "F32", "[3]", 0, 12) + "," + entry("b", "F32", "[2]", 8, 16) + "}",
              d16);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("'b'") && Contains("overlaps"));
  }
  SECTION("offsets out of bounds") {
    write_raw(p, "{" + entry("t", "F32", "[5]", 0, 20) + "}", d16);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("'t'") && Contains("exceed"));
  }
  SECTION("shape does not match the offsets") {
    write_raw(p, "{" + entry("t", "F64", "[4]", 0, 16) + "}", d16);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("'t'") && Contains("needs 32 bytes"));
  }
  SECTION("gap in data coverage") {
    write_raw(p, "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[2]", 8, 16) + "}",
              d16);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("gap of 4 bytes before tensor 'b'"));
  }
  SECTION("trailing bytes not covered") {
    write_raw(p, "{" + entry("a", "F32", "[2]", 0, 8) + "}", d16);
    REQUIRE_THROWS_WITH(st::File::open(p), Contains("8 bytes after the last tensor"));
  }
}

TEST_CASE("safetensors read() reports missing names and dtype/shape mismatches", "[checkpoint]") {
  lh::testing::TempDir dir("lh-st");
  const std::string path = dir.file("m.safetensors");
  const float v[6] = {1, 2, 3, 4, 5, 6};
  st::write_file(path, {{"layer.0.w", DType::F32, {2, 3}, v}});
  const st::File f = st::File::open(path);
  float out[6];
  REQUIRE_THROWS_WITH(f.read("layer.0.w", DType::BF16, {2, 3}, out),
                      Contains("m.safetensors") && Contains("'layer.0.w'") &&
                          Contains("expected BF16, got F32"));
  REQUIRE_THROWS_WITH(f.read("layer.0.w", DType::F32, {3, 2}, out),
                      Contains("'layer.0.w'") && Contains("expected [3, 2], got [2, 3]"));
  REQUIRE_THROWS_WITH(f.read("layer.1.w", DType::F32, {2, 3}, out),
                      Contains("'layer.1.w'") && Contains("not found"));
  CHECK_FALSE(f.contains("layer.1.w"));
}

TEST_CASE("safetensors writer rejects bad input and reports I/O errors", "[checkpoint]") {
  lh::testing::TempDir dir("lh-st");
  const float v[2] = {1, 2};
  REQUIRE_THROWS_WITH(st::write_file(dir.file("d.safetensors"),
                                     {{"x", DType::F32, {2}, v}, {"x", DType::F32, {2}, v}}),
                      Contains("duplicate") && Contains("'x'"));
  const std::string missing = dir.file("no/such/dir/x.safetensors");
  REQUIRE_THROWS_WITH(st::write_file(missing, {{"x", DType::F32, {2}, v}}),
                      Contains(missing) && Contains("No such file"));
}

TEST_CASE("checksum detects single-byte changes and streams consistently", "[checkpoint]") {
  std::vector<unsigned char> buf(1000);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 37 + 11);
  const uint64_t h = lh::checksum_bytes(buf.data(), buf.size());
  for (size_t pos : {size_t(0), size_t(7), size_t(31), size_t(32), size_t(990), size_t(999)}) {
    auto copy = buf;
    copy[pos] ^= 1;
    CHECK(lh::checksum_bytes(copy.data(), copy.size()) != h);
  }
  // Length matters even when the extra bytes are zero.
  const std::vector<unsigned char> z(65, 0);
  CHECK(lh::checksum_bytes(z.data(), 64) != lh::checksum_bytes(z.data(), 65));
  CHECK(lh::checksum_bytes(z.data(), 0) != lh::checksum_bytes(z.data(), 1));

  // Arbitrary split points give the one-shot result.
  for (size_t split : {size_t(1), size_t(13), size_t(32), size_t(500), size_t(999)}) {
    lh::Hasher s;
    s.update(buf.data(), split);
    s.update(buf.data() + split, buf.size() - split);
    CHECK(s.digest() == h);
  }

  lh::testing::TempDir dir("lh-ck");
  const std::string path = dir.file("blob.bin");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(buf.data()), 1000);
  CHECK(lh::checksum_file(path) == h);
  CHECK(lh::checksum_hex(h).size() == 16);
  REQUIRE_THROWS_WITH(lh::checksum_file(dir.file("absent")), Contains("absent"));
}
