/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers for rnf: out-of-line versions of the static inline functions
 * and macros the Rust side needs. Nothing here has logic of its own; the
 * Rust abstractions in rust/ wrap each of these with a safe interface.
 */
#ifndef RNF_HELPERS_H
#define RNF_HELPERS_H

#include <linux/types.h>

struct net;
struct sk_buff;
struct genl_info;
struct kunit;

/* Per-network-namespace data slot (struct pernet_operations::size). */
void *rnf_net_generic(const struct net *net, unsigned int id);
u64 rnf_net_cookie(const struct net *net);

/* Generic netlink replies. */
struct net *rnf_genl_info_net(const struct genl_info *info);
struct sk_buff *rnf_genlmsg_new(size_t payload);
void *rnf_genlmsg_put_reply(struct sk_buff *skb, struct genl_info *info,
			    const void *family, u8 cmd);
void rnf_genlmsg_end(struct sk_buff *skb, void *hdr);
int rnf_genlmsg_reply(struct sk_buff *skb, struct genl_info *info);
struct sk_buff *rnf_alloc_skb(unsigned int size);
struct sk_buff *rnf_skb_clone(struct sk_buff *skb);
void rnf_kfree_skb(struct sk_buff *skb);
void rnf_extack_set_msg(struct genl_info *info, const char *msg);
void rnf_extack_set_msg_copy(struct genl_info *info, const char *msg);

/* Generic netlink dumps. */
struct netlink_callback;
struct genl_info *rnf_dump_info(struct netlink_callback *cb);
long *rnf_dump_args(struct netlink_callback *cb);
void rnf_dump_set_min_alloc(struct netlink_callback *cb, u32 size);
int rnf_dump_put(struct sk_buff *skb, struct netlink_callback *cb,
		 const void *family, u8 cmd, const void *payload, u32 len);

/* Per-CPU packet/byte counters. */
struct rnf_counter {
	u64 packets;
	u64 bytes;
};
struct rnf_counter __percpu *rnf_counters_alloc(u32 n);
void rnf_counters_free(struct rnf_counter __percpu *c);
void rnf_counter_add(struct rnf_counter __percpu *c, u32 idx, u64 bytes);
void rnf_counter_sum(struct rnf_counter __percpu *c, u32 idx,
		     struct rnf_counter *out);
void rnf_counter_zero(struct rnf_counter __percpu *c, u32 idx);
void rnf_counter_add_on_cpu(struct rnf_counter __percpu *c, u32 idx,
			    u32 cpu, u64 bytes);
u32 rnf_nr_possible_cpus(void);

/* The packet path. */
struct net_device;
struct nf_hook_state;
int rnf_skb_copy_network(const struct sk_buff *skb, unsigned int offset,
			 void *to, unsigned int len);
unsigned int rnf_skb_network_len(const struct sk_buff *skb);
u32 rnf_skb_mark(const struct sk_buff *skb);
void rnf_skb_set_mark(struct sk_buff *skb, u32 mark);
bool rnf_dev_is_loopback(const struct net_device *dev);
unsigned int rnf_dev_name(const struct net_device *dev, char *buf,
			  unsigned int len);
bool rnf_skb_owner(const struct sk_buff *skb, const struct net *net,
		   u32 *uid, u32 *gid);
void rnf_log(u8 level, const char *msg);
void rnf_reject(struct sk_buff *skb, const struct nf_hook_state *state,
		u8 kind);
u64 rnf_now_coarse_ns(void);
u64 rnf_now_ns(void);
u32 rnf_random_u32(void);

/* RCU. */
void rnf_synchronize_rcu(void);
unsigned long rnf_rcu_cookie(void);
bool rnf_rcu_elapsed(unsigned long cookie);
void rnf_rcu_wait(unsigned long cookie);
void rnf_rcu_read_lock(void);
void rnf_rcu_read_unlock(void);

/* Tests: a paged (non-linear) part for an skb. */
int rnf_skb_add_page_frag(struct sk_buff *skb, const void *data,
			  unsigned int len);

/* KUnit: fail the running test, if any, with a message. */
void rnf_kunit_fail(const char *file, u32 line, const char *msg);
/* Tests: run fn(arg) with bottom halves disabled, as the forwarding path's
 * hooks run (preempt_count non-zero), or on this CPU only but preemptible
 * (preempt_count zero), as a locally sent packet's hooks may run. */
void rnf_run_bh_off(void (*fn)(void *arg), void *arg);
void rnf_run_pinned(void (*fn)(void *arg), void *arg);

/* Spinlocks taken with bottom halves disabled, in an array (lock stripes). */
spinlock_t *rnf_locks_alloc(u32 n);
void rnf_locks_free(spinlock_t *locks);
void rnf_lock_bh(spinlock_t *locks, u32 i);
void rnf_unlock_bh(spinlock_t *locks, u32 i);
void rnf_lock2_bh(spinlock_t *locks, u32 a, u32 b);
void rnf_unlock2_bh(spinlock_t *locks, u32 a, u32 b);

/* Freeing after a grace period, without calling back into the module. */
struct rcu_head;
void rnf_kfree_rcu(struct rcu_head *head, void *ptr);
/* The flows' slab cache; GFP_ATOMIC allocation for the packet path. */
struct kmem_cache *rnf_cache_create(const char *name, u32 size, u32 align);
void rnf_cache_destroy(struct kmem_cache *cache);
void *rnf_cache_alloc_atomic(struct kmem_cache *cache);
void rnf_cache_free(struct kmem_cache *cache, void *ptr);
void rnf_rcu_barrier(void);

/* Self-rearming deferred work: fn returns the delay in ms until its next
 * run, or a negative number to stop. */
struct rnf_work;
struct rnf_work *rnf_work_new(long (*fn)(void *arg), void *arg);
void rnf_work_schedule(struct rnf_work *w, u32 delay_ms);
void rnf_work_free(struct rnf_work *w);
void rnf_cond_resched(void);
bool rnf_need_resched(void);

/* The hook_counters module parameter. */
bool rnf_hook_counters_default(void);

/* What conntrack found for the packet each CPU handles last. */
struct rnf_pkt_ct {
	const void *skb;
	u32 bucket;
	u32 id;
	u32 fingerprint;
	u8 dir;
	u8 state;
	u8 flags;
	u8 shape;
};
struct rnf_pkt_ct __percpu *rnf_pkt_ct_alloc(void);
void rnf_pkt_ct_free(struct rnf_pkt_ct __percpu *p);
void rnf_pkt_ct_set(struct rnf_pkt_ct __percpu *p, const struct rnf_pkt_ct *v);
bool rnf_pkt_ct_get(struct rnf_pkt_ct __percpu *p, const void *skb,
		    struct rnf_pkt_ct *out);

/* Generic netlink multicast, from any context. */
bool rnf_genl_has_listeners(const void *family, struct net *net, u32 group);
bool rnf_genl_has_listeners_any(const void *family, u32 n_groups);
int rnf_genl_multicast(const void *family, struct net *net, u32 group, u8 cmd,
		       const void *payload, u32 len);

/* IPv4/IPv6 reassembly before conntrack (nf_defrag). */
int rnf_defrag_enable(struct net *net);
void rnf_defrag_disable(struct net *net);

u64 rnf_totalram_bytes(void);

/* NAT: writing headers, checksum state, routes and local addresses. */
/* Makes the first len bytes from the network header writable (those the
 * packet has): *data points at them, *avail says how many are in the linear
 * part, *summed is skb->ip_summed (one call per rewrite). */
int rnf_skb_writable_network(struct sk_buff *skb, unsigned int len, u8 **data,
			     unsigned int *avail, u8 *summed);
int rnf_skb_linearize(struct sk_buff *skb);
void rnf_skb_csum_update(struct sk_buff *skb, u32 native_delta, bool csum_none);
int rnf_route_me_harder(const struct nf_hook_state *state, struct sk_buff *skb);
bool rnf_masq_addr(const struct nf_hook_state *state, struct sk_buff *skb,
		   u8 *addr, u32 *ifindex);
bool rnf_redirect_addr(const struct nf_hook_state *state, struct sk_buff *skb,
		       u8 *addr);

/* Interface and address changes (masquerade forgets flows). */
int rnf_notifiers_register(void (*cb)(struct net *net, int ifindex,
				      const u8 *addr, u8 family));
void rnf_notifiers_unregister(void);

/* Tests: a kernel thread running fn until stopped. */
struct task_struct;
struct task_struct *rnf_kthread_start(int (*fn)(void *arg), void *arg);
void rnf_kthread_stop(struct task_struct *task);
bool rnf_kthread_should_stop(void);

#endif
