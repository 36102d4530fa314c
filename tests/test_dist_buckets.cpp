// The gradient bucket plan over a real ParamLayout, its split into per-owner pieces, and the
// world-1 communicator.
#include <catch2/catch.hpp>

#include <vector>

#include "lighthouse/dist.h"
#include "lighthouse/model.h"

TEST_CASE("gradient buckets: reverse layout order, contiguous, size-capped", "[cpu][dist]") {
  lh::ModelConfig cfg;
  cfg.dim = 32, cfg.n_layers = 3, cfg.n_heads = 2, cfg.n_kv_heads = 1, cfg.ffn_hidden = 48;
  const lh::ParamLayout layout(cfg);
  const auto& entries = layout.entries();
  for (size_t cap : {size_t(1), size_t(4096), size_t(20000), size_t(1) << 30}) {
    INFO("bucket bytes " << cap);
    const auto buckets = lh::plan_grad_buckets(layout, cap);
    REQUIRE_FALSE(buckets.empty());
    CHECK(buckets.front().end == layout.total());
    CHECK(buckets.front().last_entry == entries.size() - 1);  // lm_head: backward's first gradient
    CHECK(buckets.back().begin == 0);
    CHECK(buckets.back().first_entry == 0);  // the embedding: backward's last gradient
    for (size_t i = 0; i < buckets.size(); ++i) {
      const lh::GradBucket& b = buckets[i];
      CHECK(b.begin == entries[b.first_entry].offset);
      CHECK(b.end == entries[b.last_entry].offset + entries[b.last_entry].numel);
      // Within the cap unless a single parameter is bigger than the cap.
      CHECK((b.size() * sizeof(float) <= cap || b.first_entry == b.last_entry));
      if (i + 1 < buckets.size()) {
        CHECK(buckets[i + 1].end == b.begin);  // no gap, no overlap, descending
        CHECK(buckets[i + 1].last_entry + 1 == b.first_entry);
        // Greedy: the next parameter in backward order would not have fit.
        CHECK((b.size() + entries[b.first_entry - 1].numel) * sizeof(float) > cap);
      }
    }
    if (cap == 1) CHECK(buckets.size() == entries.size());
    if (cap == size_t(1) << 30) CHECK(buckets.size() == 1);
  }
  CHECK_THROWS_AS(lh::plan_grad_buckets(layout, 0), lh::DistError);
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
  comm->group_start();
  comm->reduce_sum(a.data(), a.size(), 0, nullptr);
  comm->group_end();
  CHECK(a == std::vector<float>{1, 2, 3, 4});
  std::vector<float> c(4, 0.0f);
  comm->all_gather(a.data(), c.data(), 4 * sizeof(float), nullptr);
  comm->synchronize(nullptr);
  CHECK(c == a);
  comm->barrier();
  comm->abort();
  CHECK_THROWS_WITH(comm->barrier(), Catch::Matchers::Contains("after abort"));
}

TEST_CASE("bucket pieces: every element reduced once, to the rank whose shard holds it", "[cpu][dist]") {
  lh::ModelConfig cfg;
  cfg.dim = 32, cfg.n_layers = 3, cfg.n_heads = 2, cfg.n_kv_heads = 1, cfg.ffn_hidden = 48;
  const lh::ParamLayout layout(cfg);
  for (int world : {1, 2, 3, 4, 7}) {
    for (size_t cap : {size_t(64), size_t(4096), size_t(1) << 30}) {
      INFO("world " << world << ", bucket bytes " << cap);
      const size_t count = lh::shard_count(layout.total(), world, 64);
      std::vector<int> owner_of(layout.total(), -1);  // which rank each element is reduced to
      for (const lh::GradBucket& b : lh::plan_grad_buckets(layout, cap)) {
        size_t at = b.begin;
        for (const lh::OwnedPiece& p : lh::split_by_owner(b.begin, b.end, count)) {
          CHECK(p.begin == at);  // pieces tile the bucket in order
          CHECK(p.end > p.begin);
          for (size_t i = p.begin; i < p.end; ++i) {
            CHECK(owner_of[i] == -1);
            owner_of[i] = p.owner;
          }
          at = p.end;
        }
        CHECK(at == b.end);
      }
      // The owner is the rank whose ZeRO-1 shard contains the element, so the pieces amount to
      // a reduce-scatter of the whole buffer.
      for (int r = 0; r < world; ++r) {
        const lh::ShardRange s = lh::shard_range(layout.total(), r, world, 64);
        for (size_t i = s.begin; i < s.end; ++i) REQUIRE(owner_of[i] == r);
      }
    }
  }
  // Worked example: shards of 10, range [5, 27) -> [5,10) to 0, [10,20) to 1, [20,27) to 2.
  const auto pieces = lh::split_by_owner(5, 27, 10);
  REQUIRE(pieces.size() == 3);
  CHECK((pieces[0].begin == 5 && pieces[0].end == 10 && pieces[0].owner == 0));
  CHECK((pieces[1].begin == 10 && pieces[1].end == 20 && pieces[1].owner == 1));
  CHECK((pieces[2].begin == 20 && pieces[2].end == 27 && pieces[2].owner == 2));
  CHECK(lh::split_by_owner(7, 7, 10).empty());
  CHECK_THROWS_AS(lh::split_by_owner(0, 5, 0), lh::DistError);
}
