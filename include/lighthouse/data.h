// The data subsystem: token shards (llm.c format), text and synthetic dataset builders, and the
// data-parallel window loader. See the headers under lighthouse/data/ for details.
#pragma once
#include "lighthouse/data/byte_codec.h"
#include "lighthouse/data/loader.h"
#include "lighthouse/data/shard.h"
#include "lighthouse/data/synthetic.h"
#include "lighthouse/data/text_shards.h"
