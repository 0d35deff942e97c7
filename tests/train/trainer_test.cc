// run_finetune end to end on wiki-7m with small data: the loss goes down, an interrupted run
// resumed from its checkpoint ends bit-identical to an uninterrupted one, and every mistake a
// user can make (malformed data, a rank larger than a layer, an unknown target, an adapter
// for another model) is a clear error that leaves no output behind.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "io/peft.h"
#include "model/architecture.h"
#include "model/model.h"
#include "model/model_source.h"
#include "train/checkpoint.h"
#include "train/lora.h"
#include "train/trainer.h"
#include "train/train_test_util.h"

namespace frugal {
namespace fs = std::filesystem;
namespace {

std::string wiki_hf() { return test::shared_path("models/wiki-7m"); }

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = test::temp_dir("trainer_data") + "/" + name;
  // The tests run as parallel processes that write the same files: each writes aside and
  // renames, so that no run reads a file another one is rewriting.
  const std::string temp = path + ".tmp-" + std::to_string(::getpid());
  std::ofstream(temp) << text;
  fs::rename(temp, path);
  return path;
}

// 24 short Alpaca records.
std::string alpaca_data() {
  std::string s = "[\n";
  const char* topics[] = {"rivers", "mountains", "cities", "music", "history", "physics"};
  for (int i = 0; i < 24; ++i) {
    s += fmt::format(
        "{{\"instruction\": \"Write one sentence about {}.\", \"input\": \"{}\", \"output\": \"The {} of the region "
        "were described in the year {} by a local writer.\"}}{}\n",
        topics[i % 6], i % 3 == 0 ? "" : "Be brief.", topics[i % 6], 1800 + 7 * i, i + 1 < 24 ? "," : "");
  }
  return s + "]\n";
}

TrainOptions small_run(const std::string& out) {
  TrainOptions o;
  o.model = wiki_hf();
  o.data = write_file("alpaca.json", alpaca_data());
  o.output = out;
  o.lora.rank = 4;
  o.lora.alpha = 8;
  o.lora.dropout = 0.1;  // dropout masks must replay exactly on resume too
  o.batch = 2;
  o.grad_accum = 2;
  o.seq_len = 128;
  o.steps = 6;
  o.lr = 3e-3;
  o.warmup = 2;
  o.val_split = 0.2;
  o.threads = 2;
  o.seed = 7;
  o.log_every = 0;
  return o;
}

std::string fresh_dir(const std::string& name) {
  const std::string d = test::temp_dir("trainer") + "/" + name;
  fs::remove_all(d);
  return d;
}

std::vector<float> adapter_values(const std::string& dir) {
  std::vector<float> v;
  for (const PeftLoraModule& m : read_peft_adapter(dir).modules) {
    v.insert(v.end(), m.a.begin(), m.a.end());
    v.insert(v.end(), m.b.begin(), m.b.end());
  }
  return v;
}

TEST(Trainer, LossDecreasesAndAdapterIsWritten) {
  const std::string out = fresh_dir("basic");
  TrainOptions o = small_run(out);
  o.steps = 10;
  const TrainResult r = run_finetune(o);
  ASSERT_EQ(r.train_losses.size(), 10u);
  ASSERT_GE(r.evals.size(), 2u);
  EXPECT_LT(r.evals.back().loss, r.evals.front().loss);
  EXPECT_TRUE(fs::exists(out + "/adapter_config.json"));
  EXPECT_TRUE(fs::exists(out + "/adapter_model.safetensors"));
  EXPECT_GT(r.tokens_per_second, 0);
  const PeftAdapter a = read_peft_adapter(out);
  EXPECT_EQ(a.config.r, 4);
  EXPECT_EQ(a.modules.size(), 6u * 4u);
}

TEST(Trainer, ResumeAfterInterruptionEqualsUninterruptedRun) {
  const std::string full = fresh_dir("full");
  const TrainResult a = run_finetune(small_run(full));
  ASSERT_EQ(a.train_losses.size(), 6u);

  // Ctrl-C: the stop flag is already set, so the run stops after its first step... twice.
  const std::string parts = fresh_dir("parts");
  std::atomic<bool> stop{true};
  const TrainResult b1 = run_finetune(small_run(parts), &stop);
  EXPECT_TRUE(b1.interrupted);
  EXPECT_EQ(b1.steps_done, 1);
  EXPECT_TRUE(b1.evals.empty());  // the held-out evaluation does not hold up a Ctrl-C
  EXPECT_FALSE(fs::exists(parts + "/adapter_model.safetensors"));  // only the checkpoint
  TrainOptions resume = small_run(parts);
  resume.resume = "latest";
  const TrainResult b2 = run_finetune(resume, &stop);
  EXPECT_TRUE(b2.interrupted);
  EXPECT_EQ(b2.steps_done, 2);
  stop = false;
  const TrainResult b3 = run_finetune(resume, &stop);
  EXPECT_FALSE(b3.interrupted);
  ASSERT_EQ(b3.train_losses.size(), 4u);

  std::vector<double> losses = b1.train_losses;
  losses.insert(losses.end(), b2.train_losses.begin(), b2.train_losses.end());
  losses.insert(losses.end(), b3.train_losses.begin(), b3.train_losses.end());
  EXPECT_EQ(losses, a.train_losses);  // bit-identical
  EXPECT_EQ(adapter_values(parts), adapter_values(full));
  // The same bytes, not only the same values: modules and target_modules in the same order.
  for (const char* f : {"/adapter_model.safetensors", "/adapter_config.json"}) {
    std::ifstream x(parts + f, std::ios::binary), y(full + f, std::ios::binary);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(x), {}), std::string(std::istreambuf_iterator<char>(y), {}))
        << f;
  }
  EXPECT_EQ(b3.evals.back().loss, a.evals.back().loss);
}

std::string file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A resume that must be refused, with a message naming the fingerprint entry that differs.
void expect_resume_refused(const TrainOptions& o, const std::string& entry) {
  try {
    run_finetune(o);
    FAIL() << "resumed although " << entry << " differs";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(entry), std::string::npos) << e.what();
  }
}

// At a full disk (here a file size limit, RLIMIT_FSIZE) the adapter's write fails, and so does
// the larger checkpoint written in its place: the adapter's error is the one shown first.
TEST(Trainer, AFullDiskShowsTheAdaptersErrorFirst) {
  const std::string out = fresh_dir("full_disk");
  TrainOptions o = small_run(out);
  o.steps = 1;
  std::string error;
  try {
    const test::FileSizeLimit full_disk(4 << 10);
    run_finetune(o);
  } catch (const Error& e) {
    error = e.what();
  }
  const size_t adapter = error.find("adapter_"), checkpoint = error.find("checkpoint");
  ASSERT_NE(adapter, std::string::npos) << error;
  ASSERT_NE(checkpoint, std::string::npos) << error;
  EXPECT_LT(adapter, checkpoint) << error;
}

TEST(Trainer, InitAdapterContinuesWhereTheAdapterLeftOff) {
  const std::string first = fresh_dir("warm_first");
  const TrainResult a = run_finetune(small_run(first));
  ASSERT_GE(a.evals.size(), 2u);

  TrainOptions warm = small_run(fresh_dir("warm_second"));
  warm.init_adapter = first;
  warm.steps = 3;
  warm.lora.rank = 8;  // not used: the adapter keeps its own shape
  const TrainResult b = run_finetune(warm);
  ASSERT_EQ(b.train_losses.size(), 3u);
  ASSERT_GE(b.evals.size(), 2u);
  // The same held-out rows through the same adapter: the loss the first run ended with.
  EXPECT_EQ(b.evals.front().loss, a.evals.back().loss);
  EXPECT_NE(b.evals.front().loss, a.evals.front().loss);  // not new adapters (B = 0)
  EXPECT_NE(adapter_values(warm.output), adapter_values(first));
  EXPECT_EQ(file_bytes(warm.output + "/adapter_config.json"), file_bytes(first + "/adapter_config.json"));

  // Interrupted and resumed, it ends where the uninterrupted warm start did.
  TrainOptions parts = warm;
  parts.output = fresh_dir("warm_parts");
  std::atomic<bool> stop{true};
  EXPECT_TRUE(run_finetune(parts, &stop).interrupted);
  parts.resume = "latest";
  stop = false;
  const TrainResult c = run_finetune(parts, &stop);
  EXPECT_EQ(c.evals.back().loss, b.evals.back().loss);
  EXPECT_EQ(file_bytes(parts.output + "/adapter_model.safetensors"), file_bytes(warm.output + "/adapter_model.safetensors"));

  // A checkpoint of a warm start continues from the same adapter only.
  TrainOptions other = warm;
  other.output = fresh_dir("warm_other");
  stop = true;
  EXPECT_TRUE(run_finetune(other, &stop).interrupted);
  other.resume = "latest";
  other.init_adapter = test::reference_dir() + "/wiki7m_lora";
  expect_resume_refused(other, "init_adapter_contents");
}

TEST(Trainer, InitAdapterKeepsPeftPatterns) {
  // PEFT's reference adapter: r 4, alpha 8, o_proj at alpha 4, down_proj at rank 2, layers 0, 3, 5.
  const std::string ref = test::reference_dir() + "/wiki7m_lora";
  TrainOptions o = small_run(fresh_dir("warm_patterns"));
  o.init_adapter = ref;
  o.steps = 2;
  run_finetune(o);
  const PeftAdapter in = read_peft_adapter(ref), out = read_peft_adapter(o.output);
  EXPECT_EQ(out.config.r, 4);
  EXPECT_EQ(out.config.lora_alpha, 8.0);
  EXPECT_EQ(out.config.target_modules, in.config.target_modules);
  EXPECT_EQ(out.config.layers_to_transform, in.config.layers_to_transform);
  EXPECT_EQ(out.config.rank_pattern, in.config.rank_pattern);
  EXPECT_EQ(out.config.alpha_pattern, in.config.alpha_pattern);
  EXPECT_EQ(out.config.lora_dropout, o.lora.dropout);
  ASSERT_EQ(out.modules.size(), in.modules.size());
  for (size_t i = 0; i < in.modules.size(); ++i) {
    const PeftLoraModule &x = in.modules[i], &y = out.modules[i];
    EXPECT_EQ(y.module, x.module);
    EXPECT_EQ(y.rank, x.rank) << x.module;
    EXPECT_EQ(out.config.scale_for(y.module, y.rank), in.config.scale_for(x.module, x.rank)) << x.module;
  }
  EXPECT_EQ(out.config.scale_for("model.layers.0.self_attn.o_proj", 4), 1.0);  // alpha 4 / r 4
  EXPECT_EQ(out.config.rank_for("model.layers.3.mlp.down_proj"), 2);
  EXPECT_NE(adapter_values(o.output), adapter_values(ref));

  // exclude_modules and layers_pattern are written back too (they were dropped, so PEFT would
  // have added an untrained module where the excluded one is).
  auto config = nlohmann::ordered_json::parse(std::ifstream(ref + "/adapter_config.json"));
  config["exclude_modules"] = R"(.*\.5\.self_attn\.q_proj)";
  config["layers_pattern"] = "layers";
  const std::string excluding = fresh_dir("warm_exclude_in");
  fs::create_directories(excluding);
  PeftAdapter without = in;
  std::erase_if(without.modules, [](const PeftLoraModule& m) { return m.module == "model.layers.5.self_attn.q_proj"; });
  write_peft_adapter(excluding, without);
  std::ofstream(excluding + "/adapter_config.json") << config.dump();
  o.output = fresh_dir("warm_exclude_out");
  o.init_adapter = excluding;
  run_finetune(o);
  const PeftAdapter excluded = read_peft_adapter(o.output);
  EXPECT_EQ(excluded.config.exclude_modules, std::vector<std::string>{R"(.*\.5\.self_attn\.q_proj)"});
  EXPECT_TRUE(excluded.config.exclude_modules_regex);
  EXPECT_EQ(excluded.config.layers_pattern, "layers");
  EXPECT_EQ(excluded.modules.size(), in.modules.size() - 1);
}

TEST(Trainer, ResumeRefusesAnotherRunsCheckpoint) {
  const std::string out = fresh_dir("refuse");
  std::atomic<bool> stop{true};
  run_finetune(small_run(out), &stop);
  TrainOptions other = small_run(out);
  other.resume = "latest";
  other.lr = 1e-3;
  expect_resume_refused(other, "lr");
  // And a fresh run into a folder with checkpoints is refused rather than mixed in.
  EXPECT_THROW(run_finetune(small_run(out)), Error);
  // The same data path with other contents: the checkpoint's run trained on other records.
  const std::string rewritten = fresh_dir("rewritten");
  TrainOptions first = small_run(rewritten);
  first.data = write_file("rewritten.json", alpaca_data());
  run_finetune(first, &stop);
  write_file("rewritten.json", alpaca_data().replace(alpaca_data().find("rivers"), 6, "forest"));
  first.resume = "latest";
  expect_resume_refused(first, "data_contents");
}

TEST(Trainer, DamagedCheckpointStateIsANamedError) {
  // A state file edited or damaged by hand: an Error naming the file and the key, not an
  // nlohmann exception ("total_steps" as a string used to end the process).
  const std::string dir = fresh_dir("damaged_state");
  fs::create_directories(dir);
  const auto state_with = [&](const std::string& text) {
    std::ofstream(dir + "/trainer_state.json") << text;
    return dir;
  };
  EXPECT_EQ(read_checkpoint_state(state_with(R"({"step": 3, "total_steps": 8, "fingerprint": {}})")).total_steps, 8);
  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {R"({"step": 3, "total_steps": "8", "fingerprint": {}})", "'total_steps' must be an integer, not \"8\""},
           {R"({"step": 2.5, "fingerprint": {}})", "'step' must be an integer, not 2.5"},
           {R"({"total_steps": 8, "fingerprint": {}})", "required key 'step' is missing"},
           {R"({"step": 3})", "the checkpoint state is incomplete"}}) {
    try {
      read_checkpoint_state(state_with(text));
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("trainer_state.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

TEST(Trainer, OutputFolderNeverReplacesAnAdapterOrAnInput) {
  // A finished adapter (no checkpoints left) is not overwritten by a new run, and the base
  // model's folder does not receive adapter files.
  const std::string done = fresh_dir("done_adapter");
  fs::create_directories(done);
  std::ofstream(done + "/adapter_config.json") << "{}";
  try {
    run_finetune(small_run(done));
    FAIL() << "overwrote an adapter";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already holds an adapter"), std::string::npos) << e.what();
  }
  TrainOptions into_model = small_run(wiki_hf());
  try {
    run_finetune(into_model);
    FAIL() << "wrote into the model folder";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is the input"), std::string::npos) << e.what();
  }
}

// Runs `o`, expects an Error whose message contains every one of `parts`, and no output.
void expect_clean_failure(const TrainOptions& o, std::initializer_list<std::string> parts) {
  try {
    run_finetune(o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.output)) << "partial output in " << o.output;
}

TEST(Trainer, MalformedDataIsReportedWithItsLineAndWritesNothing) {
  TrainOptions o = small_run(fresh_dir("bad_json"));
  o.data = write_file("bad.jsonl", "{\"text\": \"a fine line of text\"}\n{\"text\": \"another fine line\"}\n{\"text\": oops}\n");
  expect_clean_failure(o, {"bad.jsonl", ":3"});
  o.data = write_file("bad_role.jsonl",
                      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"robot\", \"content\": "
                      "\"hello\"}]}\n");
  o.chat_template = "chatml";
  expect_clean_failure(o, {"bad_role.jsonl", ":1", "robot"});
  o.chat_template.clear();
  o.data = write_file("missing.json", "[{\"instruction\": \"x\"}]");
  expect_clean_failure(o, {"missing.json", "output"});
}

TEST(Trainer, BadLoraOptionsAreClearErrorsAndWriteNothing) {
  TrainOptions o = small_run(fresh_dir("bad_rank"));
  o.lora.rank = 300;  // wiki-7m's layers are 256 x 128 and up
  expect_clean_failure(o, {"rank 300", "larger than", "at most"});
  EXPECT_THROW(parse_lora_targets("q,k,query"), Error);
  try {
    parse_lora_targets("q,k,query");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'query'"), std::string::npos) << e.what();
  }
}

TEST(Trainer, ALayerNamedTwiceIsOneLayer) {
  // "0-2,1" used to make two modules on layer 1: one trained blind, and the save failed at the
  // end of the run ("added twice").
  const std::string out = fresh_dir("dup_layers");
  TrainOptions o = small_run(out);
  o.steps = 1;
  o.val_split = 0;
  o.lora.layers = {0, 1, 2, 1};
  const TrainResult r = run_finetune(o);
  const PeftAdapter a = read_peft_adapter(out);
  EXPECT_EQ(a.modules.size(), 3u * 4u);
  int64_t saved = 0;
  for (const PeftLoraModule& m : a.modules) saved += static_cast<int64_t>(m.a.size() + m.b.size());
  EXPECT_EQ(r.parameters, saved);
  ASSERT_TRUE(a.config.layers_to_transform.has_value());
  EXPECT_EQ(*a.config.layers_to_transform, (std::vector<int64_t>{0, 1, 2}));
}

TEST(Trainer, ADivergedRunIsAnErrorAndWritesNoAdapter) {
  // A loss or gradient gone NaN used to train on and write an adapter that no loader accepts,
  // with exit code 0.
  const std::string out = fresh_dir("diverged");
  TrainOptions o = small_run(out);
  o.lr = 50;
  o.max_grad_norm = 0;
  o.schedule = "constant";
  o.warmup = 0;
  o.lora.dropout = 0;
  try {
    run_finetune(o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("diverged"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--lr"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out + "/adapter_model.safetensors"));
  TrainOptions a = small_run(fresh_dir("huge_alpha"));
  a.lora.alpha = 1e40;
  expect_clean_failure(a, {"alpha", "overflow"});
}

TEST(Trainer, AdapterConfigMustMatchItsTensors) {
  // PEFT builds the modules from adapter_config.json: tensors of another rank are refused and
  // modules outside target_modules / layers_to_transform are not adapted. frugal applies the
  // tensors, so a config that disagrees with them is an error naming the module.
  const std::string ref = test::reference_dir() + "/wiki7m_lora";
  const nlohmann::json config = nlohmann::json::parse(std::ifstream(ref + "/adapter_config.json"));
  auto with_config = [&](const std::string& name, const auto& c) {
    const std::string dir = fresh_dir(name);
    fs::create_directories(dir);
    fs::copy_file(ref + "/adapter_model.safetensors", dir + "/adapter_model.safetensors");
    std::ofstream(dir + "/adapter_config.json") << c.dump();
    return dir;
  };
  auto expect_refused = [&](const std::string& name, const auto& c, const std::vector<std::string>& parts) {
    const std::string dir = with_config(name, c);
    try {
      read_peft_adapter(dir);
      ADD_FAILURE() << name << ": accepted";
    } catch (const Error& e) {
      for (const std::string& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  nlohmann::json c = config;
  c["r"] = 8;  // the tensors are rank 4 (down_proj 2, from rank_pattern)
  expect_refused("wrong_rank", c, {"rank 4", "r = 8"});
  c = config;
  c["rank_pattern"] = nlohmann::json::object();
  expect_refused("no_rank_pattern", c, {"down_proj", "rank 2", "r = 4"});
  c = config;
  c["target_modules"] = {"q_proj", "k_proj", "v_proj", "o_proj"};
  expect_refused("fewer_targets", c, {"mlp.", "target_modules"});
  c = config;
  c["layers_to_transform"] = {0, 3};
  expect_refused("fewer_layers", c, {"layers.5.", "layers_to_transform"});
  // PEFT's string forms: a regular expression over the whole name, and "all-linear" (neither
  // with layers_to_transform, which PEFT refuses beside a string).
  c = config;
  c["layers_to_transform"] = nullptr;
  c["target_modules"] = R"(.*\.(q|k|v|o|gate|up|down)_proj)";
  EXPECT_EQ(read_peft_adapter(with_config("regex_targets", c)).modules.size(), 21u);
  c["target_modules"] = R"(.*\.(q|k|v|o)_proj)";
  expect_refused("regex_fewer", c, {"mlp.", "target_modules"});
  c["target_modules"] = "all-linear";
  EXPECT_EQ(read_peft_adapter(with_config("all_linear", c)).modules.size(), 21u);
  c["target_modules"] = "";  // a regular expression that matches no module
  expect_refused("regex_empty", c, {"target_modules"});
  // An empty list names no module (PEFT finds no target module in the model): it was taken as
  // "not given", where the tensors say which modules. null still is that.
  c["target_modules"] = nlohmann::json::array();
  expect_refused("no_targets", c, {"adapter_config.json", "target_modules", "empty"});
  // null is PEFT's default for the model type (q_proj and v_proj for Llama and Qwen2), not "the
  // tensors decide": PEFT adapts q and v and ignores the other tensors, which frugal refuses.
  c["target_modules"] = nullptr;
  expect_refused("targets_null", c, {"mlp.down_proj", "target_modules (q_proj, v_proj)"});
  // A regular expression that PEFT (Python's re) reads and std::regex did not, named with its file.
  c["target_modules"] = R"(.*\.(?P<leaf>q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj))";
  EXPECT_EQ(read_peft_adapter(with_config("regex_python", c)).modules.size(), 21u);
  c["target_modules"] = R"(.*\.(q_proj)";
  expect_refused("regex_broken", c, {"adapter_config.json", "target_modules", "not a regular expression"});
  // layers_to_transform: an empty list is every layer; beside a regular expression PEFT refuses it;
  // a module named in full is adapted whatever its layer.
  c = config;
  c["layers_to_transform"] = nlohmann::json::array();
  EXPECT_FALSE(read_peft_adapter(with_config("layers_empty", c)).config.layers_to_transform);
  c["target_modules"] = R"(.*_proj)";
  c["layers_to_transform"] = {0, 3, 5};
  expect_refused("regex_and_layers", c, {"layers_to_transform", "regular expression"});
  c = config;
  c["layers_to_transform"] = {0};
  c["target_modules"] = nlohmann::json::array();
  for (const char* layer : {"0", "3", "5"})
    for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      c["target_modules"].push_back(fmt::format("model.layers.{}.{}", layer, m));
  EXPECT_EQ(read_peft_adapter(with_config("full_names", c)).modules.size(), 21u);
  // layers_pattern: "layers" is a Llama's (kept on the way out); another name matches nothing.
  c = config;
  c["layers_pattern"] = "layers";
  EXPECT_EQ(read_peft_adapter(with_config("layers_pattern", c)).config.layers_pattern, "layers");
  c["layers_pattern"] = "h";
  expect_refused("layers_pattern_h", c, {"layers_pattern", "\"h\""});
  // exclude_modules takes modules out of the targets: their tensors are then refused.
  c = config;
  c["exclude_modules"] = {"o_proj"};
  expect_refused("excluded", c, {"o_proj", "exclude_modules"});
  c["exclude_modules"] = nullptr;
  EXPECT_EQ(read_peft_adapter(with_config("exclude_null", c)).modules.size(), 21u);
  // Keys that change what an adapter computes, which frugal does not implement: refused by
  // name when set, accepted when null or false (as newer PEFT versions write them).
  for (const char* key : {"alora_invocation_tokens", "layer_replication", "use_qalora", "lora_bias",
                          "trainable_token_indices", "target_parameters", "use_bdlora", "arrow_config"}) {
    const std::string k = key;
    const bool flag = k == "use_qalora" || k == "lora_bias";
    c = config;
    c[key] = flag ? nlohmann::json(true)
             : k == "use_bdlora" ? nlohmann::json{{"target_modules_bd_a", {"o_proj"}}, {"nblocks", 2}}
             : k == "arrow_config" ? nlohmann::json{{"top_k", 3}}
                                   : nlohmann::json::array({0, 1});
    expect_refused(std::string("set_") + key, c, {key});
    c[key] = flag ? nlohmann::json(false) : nlohmann::json(nullptr);
    EXPECT_EQ(read_peft_adapter(with_config(std::string("unset_") + key, c)).modules.size(), 21u) << key;
  }
  // Values of the wrong kind: named errors (a fractional r was cut to a whole one while the
  // scale should be alpha over the written r; a number for peft_type aborted on a JSON exception).
  c = config;
  c["r"] = 4.5;
  expect_refused("fractional_r", c, {"'r'", "whole number"});
  c = config;
  c["peft_type"] = 5;
  expect_refused("peft_type_number", c, {"peft_type", "string"});
  // null is "not given", as for every other key (it threw nlohmann's type_error).
  c = config;
  c["rank_pattern"] = {{"down_proj", 1e20}};  // converted to int64 unchecked (undefined behaviour)
  expect_refused("rank_pattern_huge", c, {"rank_pattern['down_proj']", "whole number", "1e+20"});
  c = config;
  c["peft_type"] = nullptr;
  EXPECT_EQ(read_peft_adapter(with_config("peft_type_null", c)).modules.size(), 21u);
}

TEST(Trainer, AdapterPatternsFollowPeft) {
  // peft.utils.get_pattern_key: a key applies to a module whose name fully matches
  // "(.*\.)?(" + key + ")", and the first matching key in the config's order wins.
  const std::string ref = test::reference_dir() + "/wiki7m_lora";
  const auto config = nlohmann::ordered_json::parse(std::ifstream(ref + "/adapter_config.json"));
  auto read_with = [&](const std::string& name, const nlohmann::ordered_json& c) {
    const std::string dir = fresh_dir(name);
    fs::create_directories(dir);
    fs::copy_file(ref + "/adapter_model.safetensors", dir + "/adapter_model.safetensors");
    std::ofstream(dir + "/adapter_config.json") << c.dump();
    return read_peft_adapter(dir).config;
  };
  const std::string q0 = "model.layers.0.self_attn.q_proj", v3 = "model.layers.3.self_attn.v_proj";
  const std::string o0 = "model.layers.0.self_attn.o_proj", o3 = "model.layers.3.self_attn.o_proj";
  // An alternation applies to every module it names (it applied to the first only: the "|"
  // split the prefix off the rest).
  auto c = config;
  c["alpha_pattern"] = nlohmann::ordered_json::object();
  c["alpha_pattern"]["q_proj|v_proj"] = 32.0;
  c["alpha_pattern"]["o_proj"] = 4.0;
  PeftLoraConfig got = read_with("alternation", c);
  EXPECT_EQ(got.scale_for(q0, 4), 8.0);
  EXPECT_EQ(got.scale_for(v3, 4), 8.0);
  c = config;
  c["rank_pattern"] = nlohmann::ordered_json::object();
  c["rank_pattern"]["zzz_proj|down_proj"] = 2;
  EXPECT_EQ(read_with("rank_alternation", c).rank_for("model.layers.5.mlp.down_proj"), 2);
  // Overlapping keys: the config's order decides, not the keys' alphabetical order.
  c = config;
  c["alpha_pattern"] = nlohmann::ordered_json::object();
  c["alpha_pattern"]["o_proj"] = 4.0;
  c["alpha_pattern"]["model.layers.0.self_attn.o_proj"] = 64.0;
  got = read_with("general_first", c);
  EXPECT_EQ(got.alpha_for(o0), 4.0);
  c["alpha_pattern"] = nlohmann::ordered_json::object();
  c["alpha_pattern"]["model.layers.0.self_attn.o_proj"] = 64.0;
  c["alpha_pattern"]["o_proj"] = 4.0;
  got = read_with("specific_first", c);
  EXPECT_EQ(got.alpha_for(o0), 64.0);
  EXPECT_EQ(got.alpha_for(o3), 4.0);
  // Python's syntax (a lookbehind, \Z): std::regex could not read these keys and fell back to a
  // suffix match, which matched nothing, so o_proj kept alpha 4.
  c["alpha_pattern"] = nlohmann::ordered_json::object();
  c["alpha_pattern"][R"((?<=layers\.0\.self_attn\.)o_proj)"] = 64.0;
  c["alpha_pattern"][R"(layers\.3\.self_attn\.o_proj\Z)"] = 16.0;
  got = read_with("python_syntax", c);
  EXPECT_EQ(got.alpha_for(o0), 64.0);
  EXPECT_EQ(got.alpha_for(o3), 16.0);
  EXPECT_EQ(got.alpha_for(q0), 8.0);
}

TEST(Trainer, AdapterForAnotherBaseIsRefused) {
  // An adapter for wiki-7m on a model of other shapes (stories260K: 64 wide, 5 layers).
  auto source = ModelSource::open(test::shared_path("models/stories260K/stories260K.bin"),
                                  ModelOpenOptions{.tokenizer_path = test::shared_path("models/stories260K/tok512.bin")});
  auto model = load_model(*source);
  const auto& decoder = dynamic_cast<const DecoderModel&>(*model);
  const std::string dir = test::reference_dir() + "/wiki7m_lora";
  try {
    LoraSet::from_peft(decoder, read_peft_adapter(dir), dir);
    FAIL() << "an adapter for another model was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace frugal
