// Data subsystem tests: shard format, spec resolution, text and synthetic builders, DataLoader.
#include <catch2/catch.hpp>

#include <chrono>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "lighthouse/data.h"

namespace fs = std::filesystem;
using namespace lh::data;
using Catch::Matchers::Contains;

namespace {

// A fresh directory per test, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("lh_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::vector<int32_t> iota_tokens(size_t n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// Batches as (inputs, targets) pairs for `steps` calls.
std::vector<std::vector<int32_t>> draw(DataLoader& loader, int steps) {
  std::vector<std::vector<int32_t>> out;
  const size_t n = loader.tokens_per_batch();
  for (int s = 0; s < steps; ++s) {
    std::vector<int32_t> in(n), tg(n);
    loader.next_batch(in.data(), tg.data());
    out.push_back(in);
    out.push_back(tg);
  }
  return out;
}

}  // namespace

TEST_CASE("shard round trip uses uint16 or uint32 as needed", "[data]") {
  TempDir dir;
  const auto small = iota_tokens(1000);  // all < 65536
  write_shard(dir / "a.bin", small);
  CHECK(read_shard(dir / "a.bin") == small);
  CHECK(open_shard(dir / "a.bin").token_bytes() == 2);
  CHECK(fs::file_size(dir / "a.bin") == kShardHeaderBytes + small.size() * 2);

  const auto big = iota_tokens(1000, 65000);  // crosses 65535
  write_shard(dir / "b.bin", big);
  const ShardView view = open_shard(dir / "b.bin");
  CHECK(view.token_bytes() == 4);
  CHECK(view.size() == big.size());
  CHECK(view[999] == 65999);
  CHECK(view.max_token() == 65999u);
  CHECK(read_shard(dir / "b.bin") == big);
  for (const auto& e : fs::directory_iterator(dir.path))  // no temporaries left behind
    CHECK((e.path().filename() == "a.bin" || e.path().filename() == "b.bin"));

  write_shard(dir / "empty.bin", {});
  CHECK(read_shard(dir / "empty.bin").empty());
  CHECK_THROWS_WITH(write_shard(dir / "neg.bin", {1, -2}), Contains("negative"));
}

TEST_CASE("two processes writing the same shard at once both succeed and leave it whole", "[data]") {
  // As the ranks of a quickstart under torchrun do: each generates the same data.
  TempDir dir;
  const fs::path path = dir / "train_000000.bin";
  const auto tokens = iota_tokens(1 << 20, 7);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // no Catch2 in the child: its exit status says whether every write succeeded
    int status = 0;
    try {
      for (int i = 0; i < 10; ++i) write_shard(path, tokens);
    } catch (...) {
      status = 1;
    }
    ::_exit(status);
  }
  std::string error;
  try {
    for (int i = 0; i < 10; ++i) write_shard(path, tokens);
  } catch (const std::exception& e) {
    error = e.what();
  }
  int status = -1;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(error.empty());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(read_shard(path) == tokens);
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator{}) == 1);
}

TEST_CASE("read-ahead hints clip to the shard and leave its tokens as they are", "[data]") {
  TempDir dir;
  const auto tokens = iota_tokens(5000, 65000);  // crosses 65535: uint32, 20,000 bytes over several pages
  write_shard(dir / "a.bin", tokens);
  const ShardView view = open_shard(dir / "a.bin");
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  // The advised bytes cover the clipped range, widened to the page holding its first token.
  REQUIRE(view.token_bytes() == 4);
  auto covers = [&](size_t advised, uint64_t tokens_in_range) {
    return advised >= tokens_in_range * 4 && advised < tokens_in_range * 4 + page;
  };
  CHECK(covers(view.will_need(0, 5000), 5000));
  CHECK(covers(view.will_need(3000, uint64_t(1) << 40), 2000));  // clipped at the shard's end
  CHECK(covers(view.will_need(4999, 1), 1));
  CHECK(view.will_need(5000, 10) == 0);  // starts at the end
  CHECK(view.will_need(uint64_t(1) << 40, 1) == 0);
  CHECK(view.will_need(17, 0) == 0);
  CHECK(ShardView{}.will_need(0, 10) == 0);  // nothing mapped
  std::vector<int32_t> out(tokens.size());
  view.read(0, out.size(), out.data());
  CHECK(out == tokens);
}

TEST_CASE("truncated shard is rejected with path and sizes", "[data]") {
  TempDir dir;
  const std::string path = dir / "t.bin";
  write_shard(path, iota_tokens(100));
  fs::resize_file(path, kShardHeaderBytes + 150);
  CHECK_THROWS_WITH(open_shard(path), Contains(path) && Contains("1224") && Contains("1174"));
  fs::resize_file(path, 10);  // not even a header
  CHECK_THROWS_WITH(open_shard(path), Contains(path) && Contains("header"));
}

TEST_CASE("wrong magic and version are rejected", "[data]") {
  TempDir dir;
  const std::string path = dir / "m.bin";
  std::vector<int32_t> header(kShardHeaderInts, 0);
  header[0] = 12345;
  header[1] = 1;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(header.data()), kShardHeaderBytes);
  CHECK_THROWS_WITH(open_shard(path), Contains(path + ": unknown shard magic 12345"));
  header[0] = kShardMagicU16;
  header[1] = 7;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(header.data()), kShardHeaderBytes);
  CHECK_THROWS_WITH(open_shard(path), Contains("version 7"));
}

TEST_CASE("token ids outside the vocabulary are rejected", "[data]") {
  TempDir dir;
  std::vector<int32_t> tokens(600, 1);
  tokens[5] = 300;
  write_shard(dir / "v.bin", tokens);
  const ShardView view = open_shard(dir / "v.bin");
  CHECK_NOTHROW(validate_tokens(view, 301));
  CHECK_THROWS_WITH(validate_tokens(view, kByteVocabSize),
                    Contains("token 300") && Contains("position 5") && Contains("v.bin"));
  CHECK_THROWS_WITH(DataLoader({dir / "v.bin"}, kByteVocabSize, 8, 1, 0, 1, 0, false), Contains("token 300"));
}

TEST_CASE("hand-written llm.c shard loads", "[data]") {
  TempDir dir;
  const std::string path = dir / "llmc.bin";
  const int n = 20;
  int32_t header[kShardHeaderInts] = {};
  header[0] = 20240520;  // llm.c GPT-2 magic, uint16 tokens
  header[1] = 1;
  header[2] = n;
  std::vector<uint16_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = static_cast<uint16_t>(50000 + i);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    out.write(reinterpret_cast<const char*>(tokens.data()), n * sizeof(uint16_t));
  }
  const auto read = read_shard(path);
  REQUIRE(read.size() == size_t(n));
  CHECK(read[0] == 50000);
  CHECK(read[19] == 50019);
  DataLoader loader({path}, 50257, 4, 2, 0, 1, 0, false);  // windows of 5: [50000..50004], ...
  std::vector<int32_t> in(8), tg(8);
  loader.next_batch(in.data(), tg.data());
  CHECK(in == std::vector<int32_t>{50000, 50001, 50002, 50003, 50005, 50006, 50007, 50008});
  CHECK(tg == std::vector<int32_t>{50001, 50002, 50003, 50004, 50006, 50007, 50008, 50009});
}

TEST_CASE("resolve_shards handles files, directories, globs and misses", "[data]") {
  TempDir dir;
  fs::create_directories(dir / "d");
  write_shard(dir / "d/b.bin", {1});
  write_shard(dir / "d/a.bin", {1});
  write_text(dir / "d/notes.txt", "x");
  const std::vector<std::string> both = {dir / "d/a.bin", dir / "d/b.bin"};
  CHECK(resolve_shards({dir / "d"}) == both);
  CHECK(resolve_shards({dir / "d/*.bin"}) == both);
  CHECK(resolve_shards({dir / "d/b.bin", dir / "d", dir / "d/./a.bin"}) == both);
  CHECK(resolve_shards({dir / "d/a.bin"}) == std::vector<std::string>{dir / "d/a.bin"});
  CHECK_THROWS_WITH(resolve_shards({dir / "d", dir / "nothing_*.bin"}), Contains("nothing_*.bin"));
  fs::create_directories(dir / "empty");
  CHECK_THROWS_WITH(resolve_shards({dir / "empty"}), Contains("empty"));
}

TEST_CASE("text shards: deterministic val split and EOD after every document", "[data]") {
  TempDir dir;
  std::vector<std::string> texts;
  for (int i = 0; i < 10; ++i) {
    texts.push_back("document " + std::to_string(i) + std::string(size_t(i), 'x'));
    write_text(dir / ("in/sub" + std::to_string(i % 2) + "/doc" + std::to_string(i) + ".txt"), texts.back());
  }
  fs::create_directories(dir / "out");
  write_shard(dir / "out/train_000099.bin", {1});  // stale shard of an earlier build
  // Temporaries of shard writes and builds: a crashed writer's (its pid above any pid_max: dead,
  // untouched for two hours) goes; one of a live process (pid 1), a dead pid's written a moment ago
  // (maybe another machine's live build) and files that are not build temporaries stay.
  const std::vector<std::string> dead = {".tmp-train_000003.bin-999999999-0", ".tmp-val_000000.bin-999999999-4",
                                         ".tmp-shard-build-999999999-0"};
  const std::vector<std::string> kept = {".tmp-train_000001.bin-1-0", ".tmp-notes.txt-999999999-0", "notes.txt",
                                         ".tmp-shard-build-999999998-0"};
  for (const auto& name : dead) {
    write_text(dir / ("out/" + name), "x");
    fs::last_write_time(dir / ("out/" + name), fs::file_time_type::clock::now() - std::chrono::hours(2));
  }
  for (const auto& name : kept) write_text(dir / ("out/" + name), "x");
  const auto st = build_text_shards({dir / "in"}, dir / "out", 0.2, 16);
  CHECK(st.documents == 10);
  CHECK(st.val_documents == 2);
  CHECK(st.train_documents == 8);
  CHECK_FALSE(fs::exists(dir / "out/train_000099.bin"));
  for (const auto& name : dead) CHECK_FALSE(fs::exists(dir / ("out/" + name)));
  for (const auto& name : kept) CHECK(fs::exists(dir / ("out/" + name)));

  auto concat = [](const std::vector<std::string>& paths) {
    std::vector<int32_t> all;
    for (const auto& p : paths) {
      const auto t = read_shard(p);
      all.insert(all.end(), t.begin(), t.end());
    }
    return all;
  };
  const auto train = concat(st.train_shards), val = concat(st.val_shards);
  CHECK(train.size() == st.train_tokens);
  CHECK(val.size() == st.val_tokens);
  CHECK(st.train_shards.size() == (st.train_tokens + 15) / 16);
  CHECK(std::count(train.begin(), train.end(), kEndOfDocument) == 8);
  CHECK(std::count(val.begin(), val.end(), kEndOfDocument) == 2);
  CHECK(train.back() == kEndOfDocument);
  // Every document's bytes appear in exactly one split, immediately followed by EOD.
  const std::string train_text = decode_bytes(train), val_text = decode_bytes(val);
  for (const auto& t : texts) {
    const bool in_train = train_text.find(t + "<|eod|>") != std::string::npos;
    const bool in_val = val_text.find(t + "<|eod|>") != std::string::npos;
    CHECK(in_train != in_val);
  }
  // Same inputs, same split.
  const auto again = build_text_shards({dir / "in"}, dir / "out2", 0.2, 16);
  CHECK(concat(again.val_shards) == val);
}

TEST_CASE("text shards: a single document is split by tokens", "[data]") {
  TempDir dir;
  write_text(dir / "one.txt", "abcdefghij");
  const auto st = build_text_shards({dir / "one.txt"}, dir / "out", 0.2);
  CHECK(decode_bytes(read_shard(st.train_shards.at(0))) == "abcdefgh<|eod|>");
  CHECK(decode_bytes(read_shard(st.val_shards.at(0))) == "ij<|eod|>");
  const auto no_val = build_text_shards({dir / "one.txt"}, dir / "out3", 0.0);
  CHECK(no_val.val_shards.empty());
  CHECK(no_val.train_tokens == 11);
  CHECK_THROWS_WITH(build_text_shards({dir / "missing"}, dir / "o", 0.1), Contains("missing"));
}

TEST_CASE("text shards: a build that fails leaves the earlier dataset, inputs inside the output are read",
          "[data]") {
  TempDir dir;
  write_text(dir / "data/raw/a.txt", "first document");
  write_text(dir / "data/raw/b.txt", "second document");
  // The input directory lies inside the output directory: its text is read, the shards are not.
  const auto st = build_text_shards({dir / "data/raw"}, dir / "data", 0.5, 8);
  CHECK(st.documents == 2);
  const auto before = read_shard(st.train_shards.at(0));
  const auto again = build_text_shards({dir / "data"}, dir / "data", 0.5, 8);
  CHECK(again.documents == 2);  // the first build's shards are not documents
  CHECK(read_shard(again.train_shards.at(0)) == before);

  // A document that cannot be read (the kernel refuses reads of /proc/self/mem at offset 0), last
  // in the sorted order, fails the build half-way, after shards were written to its staging
  // directory.
  fs::create_symlink("/proc/self/mem", dir / "data/raw/z_unreadable");
  CHECK_THROWS_WITH(build_text_shards({dir / "data/raw"}, dir / "data", 0.0, 4), Contains("z_unreadable"));
  CHECK(read_shard(dir / "data/train_000000.bin") == before);
  for (const auto& e : fs::directory_iterator(dir / "data"))
    CHECK(e.path().filename().string().rfind(".tmp-", 0) != 0);  // no staging directory left

  CHECK_THROWS_WITH(build_text_shards({"/dev/null"}, dir / "o", 0.1), Contains("not a regular file"));

  // A file with NUL bytes (a binary one, most likely) is named in the stats, for a warning.
  write_text(dir / "mixed/a.txt", "text");
  write_text(dir / "mixed/b.bin", std::string("bin\0ary", 7));
  const auto mixed = build_text_shards({dir / "mixed"}, dir / "m", 0.0);
  REQUIRE(mixed.binary_documents.size() == 1);
  CHECK_THAT(mixed.binary_documents[0], Contains("b.bin"));
}

TEST_CASE("text shards: a build that stops while publishing leaves its directory refused until a build completes",
          "[data]") {
  TempDir dir;
  write_text(dir / "raw/a.txt", "first document");
  write_text(dir / "raw/b.txt", "second document");
  build_text_shards({dir / "raw"}, dir / "data", 0.5);
  CHECK_FALSE(fs::exists(fs::path(dir / "data") / lh::data::kPublishMarker));
  CHECK(resolve_shards({dir / "data"}).size() == 2);

  // A directory where the validation shard must go makes its rename fail after the training
  // shard's: the directory now mixes two builds, as after a kill at that moment.
  fs::remove(dir / "data/val_000000.bin");
  fs::create_directories(dir / "data/val_000000.bin/in_the_way");
  write_text(dir / "raw/c.txt", "third document");
  CHECK_THROWS(build_text_shards({dir / "raw"}, dir / "data", 0.5));
  CHECK(fs::exists(fs::path(dir / "data") / lh::data::kPublishMarker));
  CHECK_THROWS_WITH(resolve_shards({dir / "data/train_000000.bin"}),
                    Contains("data: a data build is publishing its shards here, or was killed while it did"));

  fs::remove_all(dir / "data/val_000000.bin");
  build_text_shards({dir / "raw"}, dir / "data", 0.5);
  CHECK_FALSE(fs::exists(fs::path(dir / "data") / lh::data::kPublishMarker));
  CHECK(resolve_shards({dir / "data"}).size() == 2);
}

namespace {

// A shard whose token at position p is p, so a window is identified by its first token.
std::string numbered_shard(const TempDir& dir, const std::string& name, size_t n, int32_t start = 0) {
  write_shard(dir / name, iota_tokens(n, start));
  return dir / name;
}
constexpr int kBigVocab = 1 << 20;

}  // namespace

TEST_CASE("loader: targets are inputs shifted by one, windows never cross shards", "[data]") {
  TempDir dir;
  const int T = 7;
  // 20 tokens -> 2 windows of 8 (4 dropped); 17 tokens -> 2 windows.
  const auto a = numbered_shard(dir, "a.bin", 20), b = numbered_shard(dir, "b.bin", 17, 1000);
  DataLoader loader({a, b}, kBigVocab, T, 1, 0, 1, 3, true);
  CHECK(loader.windows_per_epoch() == 4);
  std::set<int32_t> starts;
  for (int s = 0; s < 4; ++s) {
    std::vector<int32_t> in(T), tg(T);
    loader.next_batch(in.data(), tg.data());
    for (int t = 0; t < T; ++t) CHECK(tg[t] == in[t] + 1);  // consecutive within one shard
    starts.insert(in[0]);
  }
  CHECK(starts == std::set<int32_t>{0, 8, 1000, 1008});
}

TEST_CASE("loader: same seed gives the same stream, another seed a different one", "[data]") {
  TempDir dir;
  const auto shard = numbered_shard(dir, "s.bin", 10000);
  DataLoader a({shard}, kBigVocab, 15, 4, 0, 1, 42, true);
  DataLoader b({shard}, kBigVocab, 15, 4, 0, 1, 42, true);
  DataLoader c({shard}, kBigVocab, 15, 4, 0, 1, 43, true);
  const int steps = 400;  // 625 windows / 4 per step: crosses two epoch boundaries
  const auto sa = draw(a, steps);
  CHECK(sa == draw(b, steps));
  CHECK(sa != draw(c, steps));
  CHECK(a.position().epoch == 2);
  DataLoader unshuffled({shard}, kBigVocab, 15, 4, 0, 1, 42, false);
  const auto first = draw(unshuffled, 1);
  CHECK(first[0][0] == 0);
  CHECK(first[0][15] == 16);
  CHECK(sa[0] != first[0]);  // shuffling actually reorders
}

TEST_CASE("loader: ranks take disjoint windows and an epoch covers each window once", "[data]") {
  TempDir dir;
  const int T = 9, B = 3, W = 4;
  // 2 shards of 61 and 59 windows: 120 windows = 10 global batches exactly.
  const std::vector<std::string> shards = {numbered_shard(dir, "a.bin", 61 * (T + 1)),
                                           numbered_shard(dir, "b.bin", 59 * (T + 1) + 5, 100000)};
  std::vector<DataLoader> ranks;
  for (int r = 0; r < W; ++r) ranks.emplace_back(shards, kBigVocab, T, B, r, W, 7, true);
  REQUIRE(ranks[0].batches_per_epoch() == 10);
  std::multiset<int32_t> epoch_seen;
  for (int step = 0; step < 10; ++step) {
    std::set<int32_t> step_seen;
    for (auto& loader : ranks) {
      std::vector<int32_t> in(B * T), tg(B * T);
      loader.next_batch(in.data(), tg.data());
      for (int b = 0; b < B; ++b) {
        CHECK(step_seen.insert(in[b * T]).second);
        epoch_seen.insert(in[b * T]);
      }
    }
  }
  CHECK(epoch_seen.size() == 120);
  CHECK(std::set<int32_t>(epoch_seen.begin(), epoch_seen.end()).size() == 120);
  CHECK(ranks[0].position() == LoaderPosition{0, 120});
}

TEST_CASE("loader: restoring a saved position reproduces the stream", "[data]") {
  TempDir dir;
  const auto shard = numbered_shard(dir, "s.bin", 5000);
  DataLoader a({shard}, kBigVocab, 31, 2, 1, 2, 9, true);  // 156 windows, 39 steps per epoch
  draw(a, 30);
  const LoaderPosition saved = a.position();
  const auto continued = draw(a, 25);  // crosses into epoch 1
  DataLoader b({shard}, kBigVocab, 31, 2, 1, 2, 9, true);
  b.set_position(saved);
  CHECK(draw(b, 25) == continued);
  CHECK(b.position() == a.position());
  b.reset();
  DataLoader fresh({shard}, kBigVocab, 31, 2, 1, 2, 9, true);
  CHECK(draw(b, 3) == draw(fresh, 3));
  CHECK_THROWS_AS(b.set_position({0, 3}), std::invalid_argument);    // not a batch boundary
  CHECK_THROWS_AS(b.set_position({0, 160}), std::invalid_argument);  // past the epoch
}

TEST_CASE("loader: too few windows is an error naming shards and sizes", "[data]") {
  TempDir dir;
  const auto shard = numbered_shard(dir, "tiny.bin", 100);
  CHECK_THROWS_WITH(DataLoader({shard}, kBigVocab, 32, 4, 0, 1, 0, true),
                    Contains("tiny.bin") && Contains("3 windows") && Contains("33 tokens"));
  CHECK_THROWS_AS(DataLoader({shard}, kBigVocab, 8, 1, 2, 2, 0, true), std::invalid_argument);
}

TEST_CASE("passkey: exact length, key at the requested depth, prompt + answer prefix", "[data]") {
  const int length = 1024;
  for (const double depth : {0.0, 0.25, 0.5, 1.0}) {
    lh::Rng rng(5);
    const PasskeyPrompt p = make_passkey_prompt(length, depth, 5, rng);
    const auto sample = passkey_sample(p);
    REQUIRE(sample.size() == size_t(length));
    CHECK(sample.back() == kEndOfDocument);
    REQUIRE(p.answer.size() == 5);
    CHECK(std::equal(p.prompt.begin(), p.prompt.end(), sample.begin()));
    CHECK(std::equal(p.answer.begin(), p.answer.end(), sample.begin() + p.prompt.size()));
    const std::string text = decode_bytes(sample), key = decode_bytes(p.answer);
    const auto pos = text.find("The pass key is " + key + ". Remember it.");
    REQUIRE(pos != std::string::npos);
    CHECK(pos == size_t(p.key_offset));
    const double filler = length - passkey_min_length(5);
    CHECK(std::abs(double(pos) - depth * filler) <= 1.0);
    const std::string ending = "What is the pass key? The pass key is " + key + ".<|eod|>";
    CHECK(text.compare(text.size() - ending.size(), ending.size(), ending) == 0);
  }
  lh::Rng r1(11), r2(11);
  CHECK(passkey_sample(make_passkey_prompt(300, -1, 5, r1)) == passkey_sample(make_passkey_prompt(300, -1, 5, r2)));
  lh::Rng rng(1);
  CHECK_THROWS_WITH(make_passkey_prompt(50, 0.5, 5, rng), Contains("minimum"));
}

TEST_CASE("mqar: exact length and queried values match the listed pairs", "[data]") {
  lh::Rng rng(3);
  const MqarSample s = make_mqar_sample(256, 0, 0, rng);
  REQUIRE(s.tokens.size() == 256);
  CHECK(s.tokens.back() == kEndOfDocument);
  const std::string text = decode_bytes(s.tokens);
  CHECK(s.answers.size() == (256 - 2) / 16);
  for (const auto& [start, len] : s.answers) {
    const std::string key = text.substr(start - 1 - kMqarKeyLen, kMqarKeyLen);
    const std::string value = text.substr(start, len);
    CHECK(text.find(key + "=" + value + " ") != std::string::npos);
  }
  CHECK_THROWS(make_mqar_sample(64, 10, 0, rng));
  CHECK_THROWS_WITH(make_mqar_sample(2, 0, 0, rng), Contains("length 2 holds not even one pair"));
}

TEST_CASE("toy language is far more predictable than its unigram entropy", "[data]") {
  lh::Rng rng(2);
  const auto tokens = encode_bytes(toy_text(200000, rng));
  const double h0 = unigram_entropy_bits(tokens);
  // Empirical entropy of the next byte given the previous three.
  const int kContext = 3;
  std::map<std::vector<int32_t>, std::map<int32_t, double>> counts;
  for (size_t i = kContext; i < tokens.size(); ++i)
    counts[std::vector<int32_t>(tokens.begin() + i - kContext, tokens.begin() + i)][tokens[i]] += 1;
  double h3 = 0.0;
  for (const auto& [ctx, next] : counts) {
    double total = 0.0;
    for (const auto& [t, c] : next) total += c;
    for (const auto& [t, c] : next) h3 -= c / double(tokens.size() - kContext) * std::log2(c / total);
  }
  CHECK(h0 > 3.5);
  CHECK(h3 < h0 - 2.0);
  lh::Rng r2(2);
  CHECK(toy_sample(100, r2).size() == 100);
  CHECK(unigram_entropy_bits({1, 2, 3, 4, 1, 2, 3, 4}) == Approx(2.0));
  CHECK(unigram_entropy_bits({7, 7, 7}) == Approx(0.0));
}

TEST_CASE("synthetic datasets: samples align with loader windows", "[data]") {
  TempDir dir;
  for (const auto task : {SyntheticTask::Passkey, SyntheticTask::Mqar, SyntheticTask::Toy}) {
    SyntheticOptions o;
    o.task = task;
    o.length = 129;
    o.train_samples = 25;
    o.val_samples = 3;
    o.shard_tokens = 1000;  // not a multiple of length: shards must still hold whole samples
    const auto st = generate_synthetic(o, dir / synthetic_task_name(task));
    CHECK(st.train_tokens == 25u * 129);
    CHECK(st.train_shards.size() == 4);  // 7 samples per shard
    CHECK(st.val_tokens == 3u * 129);
    DataLoader loader(st.train_shards, kByteVocabSize, o.length - 1, 5, 0, 1, 1, true);
    CHECK(loader.windows_per_epoch() == 25);
    // Each window is one whole sample: no EOD in the inputs, the targets end with it.
    for (int step = 0; step < 5; ++step) {
      std::vector<int32_t> in(5 * 128), tg(5 * 128);
      loader.next_batch(in.data(), tg.data());
      CHECK(std::count(in.begin(), in.end(), kEndOfDocument) == 0);
      for (int b = 0; b < 5; ++b) CHECK(tg[b * 128 + 127] == kEndOfDocument);
    }
    // Regenerating gives identical files.
    const auto again = generate_synthetic(o, dir / "again");
    CHECK(read_shard(again.val_shards[0]) == read_shard(st.val_shards[0]));
  }
  CHECK(parse_synthetic_task("mqar") == SyntheticTask::Mqar);
  CHECK_THROWS_WITH(parse_synthetic_task("nope"), Contains("passkey"));
}
