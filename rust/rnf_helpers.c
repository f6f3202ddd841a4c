// SPDX-License-Identifier: GPL-2.0
/*
 * Out-of-line wrappers for kernel static inline functions and macros used by
 * the Rust part of rnf. See rnf_helpers.h.
 */
#include <linux/percpu.h>
#include <linux/cpumask.h>
#include <linux/skbuff.h>
#include <net/genetlink.h>
#include <net/netns/generic.h>
#include <net/net_namespace.h>
#include <linux/netdevice.h>
#include <linux/netfilter.h>
#include <linux/random.h>
#include <linux/timekeeping.h>
#include <net/sock.h>
#include <net/netfilter/ipv4/nf_reject.h>
#include <net/netfilter/ipv6/nf_reject.h>
#include <kunit/test-bug.h>
#include <linux/workqueue.h>
#include <linux/kthread.h>
#include <linux/inetdevice.h>
#include <net/addrconf.h>
#include <net/ip6_route.h>
#include <net/route.h>
#include <net/if_inet6.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/spinlock.h>
#include <net/netfilter/ipv4/nf_defrag_ipv4.h>
#include <net/netfilter/ipv6/nf_defrag_ipv6.h>

#include <linux/moduleparam.h>

#include "rnf_helpers.h"

/*
 * The module's parameters (the 6.12 `module!` macro declares none).
 *
 * hook_counters: whether a network namespace created from now on counts
 * packets at hooks where it has no rules (`rnfctl hook-counters`). Off by
 * default, as nf_tables, x_tables and nf_conntrack hook a namespace only
 * once its rules need it: a namespace without rules then has no rnf hook
 * at all. Namespaces that exist when the module loads take the value given
 * to insmod or modprobe; a later change (root, through
 * /sys/module/rnf/parameters/hook_counters) applies to new namespaces.
 */
static bool hook_counters;
module_param(hook_counters, bool, 0644);
MODULE_PARM_DESC(hook_counters,
		 "count packets at every hook in new network namespaces, hooked only to count where there are no rules (default: off; per namespace: rnfctl hook-counters)");

bool rnf_hook_counters_default(void)
{
	return READ_ONCE(hook_counters);
}

void *rnf_net_generic(const struct net *net, unsigned int id)
{
	return net_generic(net, id);
}

u64 rnf_net_cookie(const struct net *net)
{
	return net->net_cookie;
}

struct net *rnf_genl_info_net(const struct genl_info *info)
{
	return genl_info_net(info);
}

struct sk_buff *rnf_genlmsg_new(size_t payload)
{
	return genlmsg_new(payload, GFP_KERNEL);
}

void *rnf_genlmsg_put_reply(struct sk_buff *skb, struct genl_info *info,
			    const void *family, u8 cmd)
{
	return genlmsg_put_reply(skb, info, family, 0, cmd);
}

void rnf_genlmsg_end(struct sk_buff *skb, void *hdr)
{
	genlmsg_end(skb, hdr);
}

int rnf_genlmsg_reply(struct sk_buff *skb, struct genl_info *info)
{
	return genlmsg_reply(skb, info);
}

struct sk_buff *rnf_alloc_skb(unsigned int size)
{
	return alloc_skb(size, GFP_KERNEL);
}

struct sk_buff *rnf_skb_clone(struct sk_buff *skb)
{
	return skb_clone(skb, GFP_KERNEL);
}

void rnf_kfree_skb(struct sk_buff *skb)
{
	kfree_skb(skb);
}

void rnf_extack_set_msg(struct genl_info *info, const char *msg)
{
	if (info->extack)
		info->extack->_msg = msg;
}

/* NL_SET_ERR_MSG_FMT's buffer, for messages that name what is wrong. */
void rnf_extack_set_msg_copy(struct genl_info *info, const char *msg)
{
	struct netlink_ext_ack *extack = info->extack;

	if (!extack)
		return;
	strscpy(extack->_msg_buf, msg, sizeof(extack->_msg_buf));
	extack->_msg = extack->_msg_buf;
}

struct genl_info *rnf_dump_info(struct netlink_callback *cb)
{
	/* genl_dumpit_info() is const only to discourage writes; rnf reads. */
	return (struct genl_info *)&genl_dumpit_info(cb)->info;
}

long *rnf_dump_args(struct netlink_callback *cb)
{
	return cb->args;
}

void rnf_dump_set_min_alloc(struct netlink_callback *cb, u32 size)
{
	cb->min_dump_alloc = min_t(u32, size, U16_MAX);
}

int rnf_dump_put(struct sk_buff *skb, struct netlink_callback *cb,
		 const void *family, u8 cmd, const void *payload, u32 len)
{
	void *hdr;

	hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
			  family, NLM_F_MULTI, cmd);
	if (!hdr)
		return -EMSGSIZE;
	if (skb_tailroom(skb) < (int)len) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	skb_put_data(skb, payload, len);
	genlmsg_end(skb, hdr);
	return 0;
}

struct rnf_counter __percpu *rnf_counters_alloc(u32 n)
{
	if (!n)
		return NULL;
	return __alloc_percpu(array_size(n, sizeof(struct rnf_counter)),
			      __alignof__(struct rnf_counter));
}

void rnf_counters_free(struct rnf_counter __percpu *c)
{
	free_percpu(c);
}

void rnf_counter_add(struct rnf_counter __percpu *c, u32 idx, u64 bytes)
{
	/* Counters are statistics: a reader may see packets and bytes of one
	 * update apart, as with iptables' and nftables' per-CPU counters. */
	this_cpu_inc(c[idx].packets);
	this_cpu_add(c[idx].bytes, bytes);
}

void rnf_counter_add_on_cpu(struct rnf_counter __percpu *c, u32 idx,
			    u32 cpu, u64 bytes)
{
	struct rnf_counter *p = per_cpu_ptr(c, cpu) + idx;

	WRITE_ONCE(p->packets, READ_ONCE(p->packets) + 1);
	WRITE_ONCE(p->bytes, READ_ONCE(p->bytes) + bytes);
}

void rnf_counter_sum(struct rnf_counter __percpu *c, u32 idx,
		     struct rnf_counter *out)
{
	int cpu;

	out->packets = 0;
	out->bytes = 0;
	for_each_possible_cpu(cpu) {
		const struct rnf_counter *p = per_cpu_ptr(c, cpu) + idx;

		out->packets += READ_ONCE(p->packets);
		out->bytes += READ_ONCE(p->bytes);
	}
}

void rnf_counter_zero(struct rnf_counter __percpu *c, u32 idx)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		struct rnf_counter *p = per_cpu_ptr(c, cpu) + idx;

		WRITE_ONCE(p->packets, 0);
		WRITE_ONCE(p->bytes, 0);
	}
}

u32 rnf_nr_possible_cpus(void)
{
	return nr_cpu_ids;
}

int rnf_skb_copy_network(const struct sk_buff *skb, unsigned int offset,
			 void *to, unsigned int len)
{
	int noff = skb_network_offset(skb);
	unsigned int avail = skb->len - noff;

	if (offset >= avail)
		return 0;
	len = min(len, avail - offset);
	/* Headers are in the linear part almost always: copy them without
	 * skb_copy_bits' walk (this runs at every hook with work). */
	if (likely(noff + offset + len <= skb_headlen(skb))) {
		memcpy(to, skb_network_header(skb) + offset, len);
		return len;
	}
	if (skb_copy_bits(skb, noff + offset, to, len))
		return -EFAULT;
	return len;
}

unsigned int rnf_skb_network_len(const struct sk_buff *skb)
{
	return skb->len - skb_network_offset(skb);
}

u32 rnf_skb_mark(const struct sk_buff *skb)
{
	return skb->mark;
}

void rnf_skb_set_mark(struct sk_buff *skb, u32 mark)
{
	skb->mark = mark;
}

bool rnf_dev_is_loopback(const struct net_device *dev)
{
	return dev && (dev->flags & IFF_LOOPBACK);
}

unsigned int rnf_dev_name(const struct net_device *dev, char *buf,
			  unsigned int len)
{
	if (!dev || !len)
		return 0;
	return strscpy(buf, dev->name, min_t(unsigned int, len, IFNAMSIZ)) < 0 ?
		       0 : strnlen(buf, len);
}

/* The owner of a locally generated packet's socket, as xt_owner sees it:
 * the opening file's fsuid/fsgid, in the namespace's user namespace. */
bool rnf_skb_owner(const struct sk_buff *skb, const struct net *net,
		   u32 *uid, u32 *gid)
{
	const struct sock *sk = skb_to_full_sk(skb);
	const struct file *filp;

	if (!sk || !sk->sk_socket || !net_eq(net, sock_net(sk)))
		return false;
	filp = sk->sk_socket->file;
	if (!filp)
		return false;
	*uid = from_kuid_munged(net->user_ns, filp->f_cred->fsuid);
	*gid = from_kgid_munged(net->user_ns, filp->f_cred->fsgid);
	return true;
}

void rnf_log(u8 level, const char *msg)
{
	if (level > 7)
		level = 4;
	if (net_ratelimit())
		printk("%c%c%s\n", KERN_SOH_ASCII, '0' + level, msg);
}

/* rules::RejectKind -> ICMP code / ICMPv6 code. */
void rnf_reject(struct sk_buff *skb, const struct nf_hook_state *state,
		u8 kind)
{
	static const u8 icmp4[] = {
		ICMP_PORT_UNREACH, 0, ICMP_NET_UNREACH, ICMP_HOST_UNREACH,
		ICMP_PROT_UNREACH, ICMP_NET_ANO, ICMP_HOST_ANO, ICMP_PKT_FILTERED,
	};
	static const u8 icmp6[] = {
		ICMPV6_PORT_UNREACH, 0, ICMPV6_NOROUTE, ICMPV6_ADDR_UNREACH,
		ICMPV6_PORT_UNREACH, ICMPV6_ADM_PROHIBITED, ICMPV6_ADM_PROHIBITED,
		ICMPV6_ADM_PROHIBITED,
	};

	if (kind >= ARRAY_SIZE(icmp4))
		kind = 0;
	switch (state->pf) {
	case NFPROTO_IPV4:
		if (kind == 1)
			nf_send_reset(state->net, state->sk, skb, state->hook);
		else
			nf_send_unreach(skb, icmp4[kind], state->hook);
		break;
	case NFPROTO_IPV6:
		if (kind == 1)
			nf_send_reset6(state->net, state->sk, skb, state->hook);
		else
			nf_send_unreach6(state->net, skb, icmp6[kind], state->hook);
		break;
	}
}

u64 rnf_now_ns(void)
{
	return ktime_get_mono_fast_ns();
}

/* Conntrack's clock: timeouts are in seconds, so the time of the last tick
 * will do, and reading it costs no clocksource access per packet (as
 * nf_conntrack uses jiffies). */
u64 rnf_now_coarse_ns(void)
{
	return ktime_get_coarse_ns();
}

u32 rnf_random_u32(void)
{
	return get_random_u32();
}

void rnf_synchronize_rcu(void)
{
	synchronize_rcu();
}

/* A grace-period cookie: a grace period that starts after this call. */
unsigned long rnf_rcu_cookie(void)
{
	return get_state_synchronize_rcu();
}

/* Whether the grace period of @cookie has ended (never sleeps). */
bool rnf_rcu_elapsed(unsigned long cookie)
{
	return poll_state_synchronize_rcu(cookie);
}

/* Waits for the grace period of @cookie, at once if it has ended. */
void rnf_rcu_wait(unsigned long cookie)
{
	cond_synchronize_rcu(cookie);
}

void rnf_rcu_read_lock(void)
{
	rcu_read_lock();
}

void rnf_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

int rnf_skb_add_page_frag(struct sk_buff *skb, const void *data,
			  unsigned int len)
{
	struct page *page;

	if (len > PAGE_SIZE || skb_shinfo(skb)->nr_frags >= MAX_SKB_FRAGS)
		return -EINVAL;
	page = alloc_page(GFP_KERNEL);
	if (!page)
		return -ENOMEM;
	memcpy(page_address(page), data, len);
	skb_add_rx_frag(skb, skb_shinfo(skb)->nr_frags, page, 0, len, PAGE_SIZE);
	return 0;
}

void rnf_kunit_fail(const char *file, u32 line, const char *msg)
{
	kunit_fail_current_test("%s:%u: %s", file, line, msg);
}

void rnf_run_bh_off(void (*fn)(void *arg), void *arg)
{
	local_bh_disable();
	fn(arg);
	local_bh_enable();
}

void rnf_run_pinned(void (*fn)(void *arg), void *arg)
{
	migrate_disable();
	fn(arg);
	migrate_enable();
}

spinlock_t *rnf_locks_alloc(u32 n)
{
	spinlock_t *locks = kvmalloc_array(n, sizeof(*locks), GFP_KERNEL);
	u32 i;

	if (!locks)
		return NULL;
	for (i = 0; i < n; i++)
		spin_lock_init(&locks[i]);
	return locks;
}

void rnf_locks_free(spinlock_t *locks)
{
	kvfree(locks);
}

void rnf_lock_bh(spinlock_t *locks, u32 i)
{
	spin_lock_bh(&locks[i]);
}

void rnf_unlock_bh(spinlock_t *locks, u32 i)
{
	spin_unlock_bh(&locks[i]);
}

/* Two stripes in index order, as nf_conntrack_double_lock() does. */
void rnf_lock2_bh(spinlock_t *locks, u32 a, u32 b)
{
	if (a > b)
		swap(a, b);
	local_bh_disable();
	spin_lock(&locks[a]);
	if (b != a)
		spin_lock_nested(&locks[b], SINGLE_DEPTH_NESTING);
}

void rnf_unlock2_bh(spinlock_t *locks, u32 a, u32 b)
{
	if (a > b)
		swap(a, b);
	if (b != a)
		spin_unlock(&locks[b]);
	spin_unlock(&locks[a]);
	local_bh_enable();
}

void rnf_kfree_rcu(struct rcu_head *head, void *ptr)
{
	kvfree_call_rcu(head, ptr);
}

struct kmem_cache *rnf_cache_create(const char *name, u32 size, u32 align)
{
	return kmem_cache_create(name, size, align, SLAB_HWCACHE_ALIGN, NULL);
}

void rnf_cache_destroy(struct kmem_cache *cache)
{
	/* Waits for the kfree_rcu() of the cache's objects still pending. */
	kmem_cache_destroy(cache);
}

void *rnf_cache_alloc_atomic(struct kmem_cache *cache)
{
	return kmem_cache_alloc(cache, GFP_ATOMIC);
}

void rnf_cache_free(struct kmem_cache *cache, void *ptr)
{
	kmem_cache_free(cache, ptr);
}

void rnf_rcu_barrier(void)
{
	rcu_barrier();
}

struct rnf_work {
	struct delayed_work dw;
	long (*fn)(void *arg);
	void *arg;
};

static void rnf_work_run(struct work_struct *work)
{
	struct rnf_work *w = container_of(to_delayed_work(work),
					  struct rnf_work, dw);
	long next = w->fn(w->arg);

	if (next >= 0)
		queue_delayed_work(system_power_efficient_wq, &w->dw,
				   msecs_to_jiffies(next));
}

struct rnf_work *rnf_work_new(long (*fn)(void *arg), void *arg)
{
	struct rnf_work *w = kzalloc(sizeof(*w), GFP_KERNEL);

	if (!w)
		return NULL;
	INIT_DELAYED_WORK(&w->dw, rnf_work_run);
	w->fn = fn;
	w->arg = arg;
	return w;
}

void rnf_work_schedule(struct rnf_work *w, u32 delay_ms)
{
	queue_delayed_work(system_power_efficient_wq, &w->dw,
			   msecs_to_jiffies(delay_ms));
}

/* Waits for a running pass (which may re-arm itself) and frees. */
void rnf_work_free(struct rnf_work *w)
{
	disable_delayed_work_sync(&w->dw);
	kfree(w);
}

void rnf_cond_resched(void)
{
	cond_resched();
}

bool rnf_need_resched(void)
{
	return need_resched();
}

struct rnf_pkt_ct __percpu *rnf_pkt_ct_alloc(void)
{
	return alloc_percpu(struct rnf_pkt_ct);
}

void rnf_pkt_ct_free(struct rnf_pkt_ct __percpu *p)
{
	free_percpu(p);
}

void rnf_pkt_ct_set(struct rnf_pkt_ct __percpu *p, const struct rnf_pkt_ct *v)
{
	struct rnf_pkt_ct *slot = get_cpu_ptr(p);

	*slot = *v;
	put_cpu_ptr(p);
}

bool rnf_pkt_ct_get(struct rnf_pkt_ct __percpu *p, const void *skb,
		    struct rnf_pkt_ct *out)
{
	struct rnf_pkt_ct *slot = get_cpu_ptr(p);
	bool found = slot->skb == skb;

	if (found)
		*out = *slot;
	put_cpu_ptr(p);
	return found;
}

bool rnf_genl_has_listeners(const void *family, struct net *net, u32 group)
{
	return genl_has_listeners(family, net, group);
}

bool rnf_genl_has_listeners_any(const void *family, u32 n_groups)
{
	u32 i;

	for (i = 0; i < n_groups; i++)
		if (genl_has_listeners(family, &init_net, i))
			return true;
	return false;
}

int rnf_genl_multicast(const void *family, struct net *net, u32 group, u8 cmd,
		       const void *payload, u32 len)
{
	struct sk_buff *skb;
	void *hdr;

	if (!genl_has_listeners(family, net, group))
		return 0;
	skb = genlmsg_new(len, GFP_ATOMIC);
	if (!skb)
		return -ENOMEM;
	hdr = genlmsg_put(skb, 0, 0, family, 0, cmd);
	if (!hdr) {
		nlmsg_free(skb);
		return -EMSGSIZE;
	}
	skb_put_data(skb, payload, len);
	genlmsg_end(skb, hdr);
	return genlmsg_multicast_netns(family, net, skb, 0, group, GFP_ATOMIC);
}

int rnf_defrag_enable(struct net *net)
{
	int err = nf_defrag_ipv4_enable(net);

	if (err)
		return err;
#if IS_ENABLED(CONFIG_IPV6)
	err = nf_defrag_ipv6_enable(net);
	if (err)
		nf_defrag_ipv4_disable(net);
#endif
	return err;
}

void rnf_defrag_disable(struct net *net)
{
#if IS_ENABLED(CONFIG_IPV6)
	nf_defrag_ipv6_disable(net);
#endif
	nf_defrag_ipv4_disable(net);
}

u64 rnf_totalram_bytes(void)
{
	return (u64)totalram_pages() << PAGE_SHIFT;
}

struct task_struct *rnf_kthread_start(int (*fn)(void *arg), void *arg)
{
	struct task_struct *t = kthread_run(fn, arg, "rnf-test");

	return IS_ERR(t) ? NULL : t;
}

void rnf_kthread_stop(struct task_struct *task)
{
	kthread_stop(task);
}

bool rnf_kthread_should_stop(void)
{
	return kthread_should_stop();
}

/* rust/skb.rs reads skb->ip_summed with these values. */
static_assert(CHECKSUM_NONE == 0 && CHECKSUM_COMPLETE == 2 && CHECKSUM_PARTIAL == 3);

int rnf_skb_writable_network(struct sk_buff *skb, unsigned int len, u8 **data,
			     unsigned int *avail, u8 *summed)
{
	unsigned int noff = skb_network_offset(skb);
	int err = skb_ensure_writable(skb, min(noff + len, skb->len));

	if (err)
		return err;
	*data = skb_network_header(skb);
	*avail = min(skb_headlen(skb) - noff, len);
	*summed = skb->ip_summed;
	return 0;
}

int rnf_skb_linearize(struct sk_buff *skb)
{
	return skb_linearize(skb);
}

void rnf_skb_csum_update(struct sk_buff *skb, u32 native_delta, bool csum_none)
{
	if (csum_none)
		skb->ip_summed = CHECKSUM_NONE;
	else if (skb->ip_summed == CHECKSUM_COMPLETE)
		skb->csum = csum_add(skb->csum, (__force __wsum)native_delta);
}

int rnf_route_me_harder(const struct nf_hook_state *state, struct sk_buff *skb)
{
	if (state->pf == NFPROTO_IPV4)
		return ip_route_me_harder(state->net, state->sk, skb, RTN_UNSPEC);
#if IS_ENABLED(CONFIG_IPV6)
	if (state->pf == NFPROTO_IPV6)
		return ip6_route_me_harder(state->net, state->sk, skb);
#endif
	return 0;
}

/* The address masquerade maps to: the outgoing interface's source address
 * for the packet's next hop (nf_nat_masquerade_ipv4/6). */
bool rnf_masq_addr(const struct nf_hook_state *state, struct sk_buff *skb,
		   u8 *addr, u32 *ifindex)
{
	const struct net_device *out = state->out;

	memset(addr, 0, 16);
	if (!out)
		return false;
	*ifindex = out->ifindex;
	if (state->pf == NFPROTO_IPV4) {
		const struct rtable *rt = skb_rtable(skb);
		__be32 nh, src;

		if (!rt)
			return false;
		nh = rt_nexthop(rt, ip_hdr(skb)->daddr);
		src = inet_select_addr(out, nh, RT_SCOPE_UNIVERSE);
		if (!src)
			return false;
		memcpy(addr, &src, 4);
		return true;
	}
#if IS_ENABLED(CONFIG_IPV6)
	if (state->pf == NFPROTO_IPV6) {
		struct in6_addr src;

		if (ipv6_dev_get_saddr(state->net, out, &ipv6_hdr(skb)->daddr,
				       0, &src) < 0)
			return false;
		memcpy(addr, &src, 16);
		return true;
	}
#endif
	return false;
}

/* The address redirect maps to: loopback for local traffic, else the
 * incoming interface's first address (nf_nat_redirect_ipv4/6). */
bool rnf_redirect_addr(const struct nf_hook_state *state, struct sk_buff *skb,
		       u8 *addr)
{
	memset(addr, 0, 16);
	if (state->pf == NFPROTO_IPV4) {
		__be32 a = 0;

		if (state->hook == NF_INET_LOCAL_OUT) {
			a = htonl(INADDR_LOOPBACK);
		} else {
			const struct in_device *indev;
			const struct in_ifaddr *ifa;

			indev = __in_dev_get_rcu(skb->dev);
			if (indev) {
				ifa = rcu_dereference(indev->ifa_list);
				if (ifa)
					a = ifa->ifa_local;
			}
		}
		if (!a)
			return false;
		memcpy(addr, &a, 4);
		return true;
	}
#if IS_ENABLED(CONFIG_IPV6)
	if (state->pf == NFPROTO_IPV6) {
		struct in6_addr a = IN6ADDR_LOOPBACK_INIT;

		if (state->hook != NF_INET_LOCAL_OUT) {
			struct inet6_dev *idev = __in6_dev_get(skb->dev);
			struct inet6_ifaddr *ifa;
			bool found = false;

			if (!idev)
				return false;
			read_lock_bh(&idev->lock);
			list_for_each_entry(ifa, &idev->addr_list, if_list) {
				if (ifa->flags & IFA_F_TENTATIVE)
					continue;
				a = ifa->addr;
				found = true;
				break;
			}
			read_unlock_bh(&idev->lock);
			if (!found)
				return false;
		}
		memcpy(addr, &a, 16);
		return true;
	}
#endif
	return false;
}

static void (*rnf_addr_cb)(struct net *net, int ifindex, const u8 *addr,
			   u8 family);

static int rnf_netdev_event(struct notifier_block *nb, unsigned long event,
			    void *ptr)
{
	struct net_device *dev = netdev_notifier_info_to_dev(ptr);

	if (event == NETDEV_DOWN)
		rnf_addr_cb(dev_net(dev), dev->ifindex, NULL, 0);
	return NOTIFY_DONE;
}

static int rnf_inet_event(struct notifier_block *nb, unsigned long event,
			  void *ptr)
{
	const struct in_ifaddr *ifa = ptr;
	struct net_device *dev = ifa->ifa_dev->dev;
	u8 addr[16] = {};

	if (event != NETDEV_DOWN)
		return NOTIFY_DONE;
	memcpy(addr, &ifa->ifa_local, 4);
	rnf_addr_cb(dev_net(dev), dev->ifindex, addr, NFPROTO_IPV4);
	return NOTIFY_DONE;
}

#if IS_ENABLED(CONFIG_IPV6)
static int rnf_inet6_event(struct notifier_block *nb, unsigned long event,
			   void *ptr)
{
	const struct inet6_ifaddr *ifa = ptr;
	u8 addr[16];

	if (event != NETDEV_DOWN)
		return NOTIFY_DONE;
	memcpy(addr, &ifa->addr, 16);
	rnf_addr_cb(dev_net(ifa->idev->dev), ifa->idev->dev->ifindex, addr,
		    NFPROTO_IPV6);
	return NOTIFY_DONE;
}

static struct notifier_block rnf_inet6_nb = {
	.notifier_call = rnf_inet6_event,
};
#endif

static struct notifier_block rnf_netdev_nb = {
	.notifier_call = rnf_netdev_event,
};

static struct notifier_block rnf_inet_nb = {
	.notifier_call = rnf_inet_event,
};

int rnf_notifiers_register(void (*cb)(struct net *net, int ifindex,
				      const u8 *addr, u8 family))
{
	int err;

	rnf_addr_cb = cb;
	err = register_netdevice_notifier(&rnf_netdev_nb);
	if (err)
		return err;
	err = register_inetaddr_notifier(&rnf_inet_nb);
	if (err)
		goto out_netdev;
#if IS_ENABLED(CONFIG_IPV6)
	err = register_inet6addr_notifier(&rnf_inet6_nb);
	if (err)
		goto out_inet;
#endif
	return 0;
#if IS_ENABLED(CONFIG_IPV6)
out_inet:
	unregister_inetaddr_notifier(&rnf_inet_nb);
#endif
out_netdev:
	unregister_netdevice_notifier(&rnf_netdev_nb);
	return err;
}

void rnf_notifiers_unregister(void)
{
#if IS_ENABLED(CONFIG_IPV6)
	unregister_inet6addr_notifier(&rnf_inet6_nb);
#endif
	unregister_inetaddr_notifier(&rnf_inet_nb);
	unregister_netdevice_notifier(&rnf_netdev_nb);
}
