// The ZeRO-1 bucket plan, and the world-1 communicator.
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "lighthouse/dist.h"

TEST_CASE("shard buckets: tile the padded buffer from its end, equal aligned chunks", "[cpu][dist]") {
  for (size_t total : {size_t(1), size_t(1000), size_t(123457)}) {
    for (int world : {1, 2, 3, 4, 7, 8}) {
      for (size_t bucket : {size_t(1), size_t(100), size_t(5000), size_t(1) << 30}) {
        INFO("total " << total << ", world " << world << ", bucket elements " << bucket);
        const size_t align = 64, count = lh::shard_count(total, world, align);
        const size_t padded = lh::padded_total(total, world, align);
        const auto buckets = lh::plan_shard_buckets(total, world, align, bucket);
        REQUIRE_FALSE(buckets.empty());
        CHECK(buckets.front().end == padded);  // backward's first gradients are at the end
        CHECK(buckets.back().begin == 0);
        size_t chunks = 0;
        for (size_t i = 0; i < buckets.size(); ++i) {
          const lh::ShardBucket& b = buckets[i];
          CHECK(b.end > b.begin);
          CHECK(b.chunk * size_t(world) == b.end - b.begin);  // equal chunks
          CHECK(b.chunk % align == 0);                       // aligned chunk boundaries
          CHECK(b.end - b.begin <= std::max(bucket + size_t(world) * align, size_t(world) * align));
          if (i + 1 < buckets.size()) CHECK(buckets[i + 1].end == b.begin);  // no gap, no overlap
          // Shard offsets follow layout order: the bucket before (in layout) ends where this starts.
          if (i + 1 < buckets.size()) CHECK(buckets[i + 1].shard_offset + buckets[i + 1].chunk == b.shard_offset);
          chunks += b.chunk;
        }
        CHECK(buckets.back().shard_offset == 0);
        CHECK(chunks == count);  // a rank's chunks fill exactly its shard buffer
        // Every element of the padded buffer belongs to exactly one rank.
        std::vector<int> owner(padded, -1);
        for (const lh::ShardBucket& b : buckets)
          for (int r = 0; r < world; ++r)
            for (size_t i = b.owned_begin(r); i < b.owned_begin(r) + b.chunk; ++i) {
              CHECK(owner[i] == -1);
              owner[i] = r;
            }
        CHECK(std::count(owner.begin(), owner.end(), -1) == 0);
      }
    }
  }
  // Worked example: 1000 elements, 2 ranks, align 64 -> padded 1024; buckets of 300 round up to
  // 384: [640, 1024), [256, 640), [0, 256) with chunks 192, 192, 128.
  const auto b = lh::plan_shard_buckets(1000, 2, 64, 300);
  REQUIRE(b.size() == 3);
  CHECK((b[0].begin == 640 && b[0].end == 1024 && b[0].chunk == 192 && b[0].shard_offset == 320));
  CHECK((b[1].begin == 256 && b[1].end == 640 && b[1].chunk == 192 && b[1].shard_offset == 128));
  CHECK((b[2].begin == 0 && b[2].end == 256 && b[2].chunk == 128 && b[2].shard_offset == 0));
  CHECK(b[0].owned_begin(1) == 832);
  CHECK_THROWS_AS(lh::plan_shard_buckets(1000, 2, 64, 0), lh::DistError);
}

TEST_CASE("local communicator: world-1 collectives are identities", "[cpu][dist]") {
  auto comm = lh::make_local_communicator();
  CHECK(comm->rank() == 0);
  CHECK(comm->world_size() == 1);
  std::vector<float> a = {1, 2, 3, 4}, b(4, 0.0f);
  comm->all_reduce_sum(a.data(), a.size(), nullptr);
  CHECK(a == std::vector<float>{1, 2, 3, 4});
  comm->reduce_scatter_sum(a.data(), b.data(), 4, nullptr);
  CHECK(b == a);
  comm->group_start();  // grouping is a no-op for one rank
  comm->group_end();
  std::vector<float> c(4, 0.0f);
  comm->all_gather(a.data(), c.data(), 4 * sizeof(float), nullptr);
  comm->synchronize(nullptr);
  CHECK(c == a);
  comm->barrier();
  comm->abort();
  CHECK_THROWS_WITH(comm->barrier(), Catch::Matchers::Contains("after abort"));
}
