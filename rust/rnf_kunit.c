// SPDX-License-Identifier: GPL-2.0
/*
 * rnf's KUnit suite. The cases are Rust functions (rust/kunit_tests.rs) that
 * fail the running test through rnf_kunit_fail() when a check does not hold.
 * The suite runs when the module is loaded into a kernel with KUnit.
 */
#include <kunit/test.h>

void rnf_kunit_percpu_counters(void);
void rnf_kunit_count_skb(void);
void rnf_kunit_status_encoding(void);
void rnf_kunit_skb_view(void);
void rnf_kunit_ruleset_publish(void);
void rnf_kunit_tails_compaction(void);
void rnf_kunit_flow_table(void);
void rnf_kunit_flow_table_chains(void);
void rnf_kunit_conntrack_policy(void);
void rnf_kunit_early_drop_reply_nodes(void);
void rnf_kunit_gc_evicts_when_full(void);
void rnf_kunit_flow_table_concurrent(void);
void rnf_kunit_packet_notes(void);

#define RNF_RUST_CASE(name)                                  \
	static void name##_case(struct kunit *test)          \
	{                                                    \
		rnf_kunit_##name();                          \
	}

RNF_RUST_CASE(percpu_counters)
RNF_RUST_CASE(count_skb)
RNF_RUST_CASE(status_encoding)
RNF_RUST_CASE(skb_view)
RNF_RUST_CASE(ruleset_publish)
RNF_RUST_CASE(tails_compaction)
RNF_RUST_CASE(flow_table)
RNF_RUST_CASE(flow_table_chains)
RNF_RUST_CASE(conntrack_policy)
RNF_RUST_CASE(early_drop_reply_nodes)
RNF_RUST_CASE(gc_evicts_when_full)
RNF_RUST_CASE(flow_table_concurrent)
RNF_RUST_CASE(packet_notes)

static struct kunit_case rnf_cases[] = {
	KUNIT_CASE(percpu_counters_case),
	KUNIT_CASE(count_skb_case),
	KUNIT_CASE(status_encoding_case),
	KUNIT_CASE(skb_view_case),
	KUNIT_CASE(ruleset_publish_case),
	KUNIT_CASE(tails_compaction_case),
	KUNIT_CASE(flow_table_case),
	KUNIT_CASE(flow_table_chains_case),
	KUNIT_CASE(conntrack_policy_case),
	KUNIT_CASE(early_drop_reply_nodes_case),
	KUNIT_CASE(gc_evicts_when_full_case),
	KUNIT_CASE(flow_table_concurrent_case),
	KUNIT_CASE(packet_notes_case),
	{}
};

static struct kunit_suite rnf_suite = {
	.name = "rnf",
	.test_cases = rnf_cases,
};

kunit_test_suite(rnf_suite);
