// detect_dist_env(): the rank layout from torchrun-style or Slurm variables. Every rank must reach
// the same conclusion from its own environment, so nothing here depends on the local machine
// except the variables themselves.
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <optional>

#include "lighthouse/device.h"
#include "lighthouse/dist.h"

namespace lh {
namespace {

std::optional<std::string> get(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;  // set-but-empty counts as unset, as in shell scripts
  return std::string(v);
}

long parse_int(const std::string& text, const char* name) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || v < INT_MIN || v > INT_MAX)
    throw DistError(std::string(name) + "='" + text + "' is not an integer");
  return v;
}

std::optional<int> get_int(const char* name) {
  auto v = get(name);
  if (!v) return std::nullopt;
  return int(parse_int(*v, name));
}

int require_int(const char* name, const char* why) {
  auto v = get_int(name);
  if (!v) throw DistError(std::string(name) + " is not set (" + why + ")");
  return *v;
}

// SLURM_TASKS_PER_NODE looks like "4(x2),3": counts per node, "(xN)" repeating one N times.
// Returns the count of node `node`.
int tasks_on_node(const std::string& spec, int node) {
  int index = 0;
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t comma = spec.find(',', pos);
    if (comma == std::string::npos) comma = spec.size();
    const std::string item = spec.substr(pos, comma - pos);
    const size_t paren = item.find("(x");
    const int count = int(parse_int(item.substr(0, paren), "SLURM_TASKS_PER_NODE"));
    int repeat = 1;
    if (paren != std::string::npos) {
      if (item.back() != ')') throw DistError("SLURM_TASKS_PER_NODE='" + spec + "' is malformed");
      repeat = int(parse_int(item.substr(paren + 2, item.size() - paren - 3), "SLURM_TASKS_PER_NODE"));
    }
    if (node < index + repeat) return count;
    index += repeat;
    pos = comma + 1;
  }
  throw DistError("SLURM_TASKS_PER_NODE='" + spec + "' has no entry for node " + std::to_string(node));
}

// The first host of a Slurm node list when it is simple: "n1", "n1,n2", "gpu[03-08,11]" give
// "n1", "n1", "gpu03". Lists with several bracket groups in one name are left to MASTER_ADDR.
std::optional<std::string> first_host(const std::string& list) {
  const size_t open = list.find('[');
  const size_t comma = list.find(',');
  if (comma != std::string::npos && (open == std::string::npos || comma < open)) return list.substr(0, comma);
  if (open == std::string::npos) return list;
  const size_t close = list.find(']', open);
  if (close == std::string::npos) return std::nullopt;
  const std::string rest = list.substr(close + 1);
  if (!rest.empty() && rest[0] != ',') return std::nullopt;  // e.g. "r[1-2]n[1-4]"
  const std::string range = list.substr(open + 1, close - open - 1);
  const size_t stop = range.find_first_of(",-");
  const std::string first = range.substr(0, stop);
  if (first.empty() || first.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return list.substr(0, open) + first;
}

// The counts are checked as soon as they are read, before the rendezvous address: a wrong RANK is
// the first thing to report, whatever else is missing.
void validate_counts(const DistEnv& e) {
  const bool t = e.source == "torchrun";
  const char* world = t ? "WORLD_SIZE" : "SLURM_NTASKS";
  const char* rank = t ? "RANK" : "SLURM_PROCID";
  const char* local = t ? "LOCAL_RANK" : "SLURM_LOCALID";
  const char* local_world = t ? "LOCAL_WORLD_SIZE" : "SLURM_NTASKS_PER_NODE";
  auto fail = [](const std::string& m) { throw DistError(m); };
  if (e.world_size < 1) fail(std::string(world) + "=" + std::to_string(e.world_size) + " must be >= 1");
  if (e.rank < 0 || e.rank >= e.world_size)
    fail(std::string(rank) + "=" + std::to_string(e.rank) + " is outside [0, " + world + "=" +
         std::to_string(e.world_size) + ")");
  if (e.local_world_size < 1 || e.local_world_size > e.world_size)
    fail(std::string(local_world) + "=" + std::to_string(e.local_world_size) + " must be in [1, " + world +
         "=" + std::to_string(e.world_size) + "]");
  if (e.local_rank < 0 || e.local_rank >= e.local_world_size)
    fail(std::string(local) + "=" + std::to_string(e.local_rank) + " is outside [0, " + local_world + "=" +
         std::to_string(e.local_world_size) + ")");
}

void validate_port(const DistEnv& e) {
  auto fail = [](const std::string& m) { throw DistError(m); };
  if (e.world_size > 1 && (e.master_port < 1 || e.master_port > 65535))
    fail((e.port_note.empty() ? "MASTER_PORT" : "the rendezvous port (" + e.port_note + ")") + "=" +
         std::to_string(e.master_port) + " is not a TCP port (1..65535)");
}

DistEnv from_torchrun() {
  DistEnv e;
  e.source = "torchrun";
  e.world_size = require_int("WORLD_SIZE", "needed with RANK");
  e.rank = require_int("RANK", "needed with WORLD_SIZE");
  // torchrun always sets these; a hand-written launch of one node may omit them.
  e.local_rank = get_int("LOCAL_RANK").value_or(e.rank);
  e.local_world_size = get_int("LOCAL_WORLD_SIZE").value_or(e.world_size);
  validate_counts(e);
  if (e.world_size > 1) {
    auto addr = get("MASTER_ADDR");
    if (!addr) throw DistError("MASTER_ADDR is not set (needed when WORLD_SIZE > 1)");
    e.master_addr = *addr;
    e.master_port = require_int("MASTER_PORT", "needed when WORLD_SIZE > 1");
    // torchrun's agent serves its own TCP store on MASTER_PORT (its workers connect to it), so the
    // rendezvous takes the next port; every rank derives the same one.
    if (get("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True") {
      e.master_port += 1;
      e.port_note = "MASTER_PORT + 1: torchrun's agent holds MASTER_PORT";
    }
  }
  return e;
}

DistEnv from_slurm() {
  DistEnv e;
  e.source = "slurm";
  // Inside a job step srun sets the step's task count; SLURM_NTASKS is the allocation's.
  e.world_size = get("SLURM_STEP_NUM_TASKS") ? require_int("SLURM_STEP_NUM_TASKS", "")
                                             : require_int("SLURM_NTASKS", "needed with SLURM_PROCID");
  e.rank = require_int("SLURM_PROCID", "needed with SLURM_NTASKS");
  e.local_rank = get_int("SLURM_LOCALID").value_or(0);
  const int node = get_int("SLURM_NODEID").value_or(0);
  if (auto per_node = get_int("SLURM_NTASKS_PER_NODE")) {
    e.local_world_size = *per_node;
  } else if (auto spec = get("SLURM_STEP_TASKS_PER_NODE") ? get("SLURM_STEP_TASKS_PER_NODE")
                                                           : get("SLURM_TASKS_PER_NODE")) {
    e.local_world_size = tasks_on_node(*spec, node);
  } else if (get_int("SLURM_NNODES").value_or(1) == 1) {
    e.local_world_size = e.world_size;
  } else {
    throw DistError("SLURM_NTASKS_PER_NODE and SLURM_TASKS_PER_NODE are not set; cannot tell ranks per node");
  }
  validate_counts(e);
  if (e.world_size > 1) {
    // An explicit MASTER_ADDR (exported in the sbatch script) wins over guessing. Rank 0 runs on
    // the step's first node; the node srun was started from (SLURM_LAUNCH_NODE_IPADDR) is only a
    // fallback, since under salloc that can be a login node that runs no rank.
    auto list = get("SLURM_STEP_NODELIST") ? get("SLURM_STEP_NODELIST")
                : get("SLURM_NODELIST")    ? get("SLURM_NODELIST")
                                           : get("SLURM_JOB_NODELIST");
    auto host = list ? first_host(*list) : std::nullopt;
    if (auto addr = get("MASTER_ADDR")) {
      e.master_addr = *addr;
    } else if (host) {
      e.master_addr = *host;
    } else if (auto ip = get("SLURM_LAUNCH_NODE_IPADDR")) {
      e.master_addr = *ip;
    } else {
      throw DistError("cannot tell rank 0's host from SLURM_NODELIST" + (list ? "='" + *list + "'" : std::string()) +
                      " or SLURM_LAUNCH_NODE_IPADDR; export MASTER_ADDR");
    }
    // Every rank of the job derives the same port from the job id, so none needs to be exported.
    if (auto port = get_int("MASTER_PORT")) {
      e.master_port = *port;
    } else if (auto job = get_int("SLURM_JOB_ID")) {
      e.master_port = 20000 + *job % 20000;
    } else {
      throw DistError("MASTER_PORT and SLURM_JOB_ID are not set; export MASTER_PORT");
    }
  }
  return e;
}

}  // namespace

std::string DistEnv::describe() const {
  std::string s = "rank " + std::to_string(rank) + "/" + std::to_string(world_size) + " (local " +
                  std::to_string(local_rank) + "/" + std::to_string(local_world_size) + ") via " + source;
  if (distributed()) s += ", master " + master_addr + ":" + std::to_string(master_port);
  if (distributed() && !port_note.empty()) s += " (" + port_note + ")";
  return s;
}

DistEnv detect_dist_env() {
  std::string mode = get("LH_DIST_ENV").value_or("auto");
  if (mode == "auto") {
    if (get("RANK") || get("WORLD_SIZE")) mode = "torchrun";
    else if (get("SLURM_PROCID") && (get("SLURM_NTASKS") || get("SLURM_STEP_NUM_TASKS"))) mode = "slurm";
    else mode = "single";
  }
  DistEnv e;
  if (mode == "torchrun") e = from_torchrun();
  else if (mode == "slurm") e = from_slurm();
  else if (mode != "single")
    throw DistError("LH_DIST_ENV='" + mode + "' is not one of auto, single, torchrun, slurm");
  if (e.distributed())
    if (auto port = get_int("LH_RENDEZVOUS_PORT")) e.master_port = *port, e.port_note = "LH_RENDEZVOUS_PORT";
  if (auto seconds = get_int("LH_DIST_TIMEOUT_S")) {
    if (*seconds < 1) throw DistError("LH_DIST_TIMEOUT_S='" + std::to_string(*seconds) + "' must be at least 1 (seconds)");
    e.collective_timeout = std::chrono::seconds(*seconds);
  }
  validate_port(e);
  return e;
}

void DistEnv::require_gpu(const std::string& what) const {
  const int devices = cuda_device_count();
  if (local_rank >= devices)
    throw std::runtime_error(what + " needs one CUDA device per rank: rank " + std::to_string(rank) + " has local rank " +
                             std::to_string(local_rank) + ", but this machine shows " + std::to_string(devices) +
                             " CUDA device(s)");
}

}  // namespace lh
