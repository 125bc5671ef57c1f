/*
 * cluster/cluster_ev.c - hiredis on worker 0's event base, with replies
 * checked as hiredis builds them.
 *
 * hiredis buffers a reply until it is whole and builds every element an
 * array announces, with no limit of its own: a Redis (or whatever answers
 * on its port) sending "$99999999999" or "*2000000000" and then bytes
 * without end would take all our memory. And it aborts the process
 * (assert) on a pub/sub message without a kind and a channel (strings), an
 * unsubscribe without its count, or a reply on a connection that asked for
 * nothing. So each connection's reader is checked after every read (the
 * part of a reply not yet parsed, at most CL_REPLY_BYTES_MAX), and its
 * objects as they are built: at most CL_REPLY_ELEMENTS_MAX array elements
 * per reply (nested ones included), and the shapes hiredis asserts. A reply
 * refused is a lost connection, as for any protocol error: the reason goes
 * to cl->last_error (cl->reply_refused says so to the disconnect callback).
 */
#include <ctype.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cluster/cluster_int.h"
#include "core/util.h"

#define STR_(x) #x
#define STR(x) STR_(x)

struct cev {
    redisAsyncContext *ac;
    struct event *rev;
    struct event *wev;
    size_t elements;           /* announced by the arrays of the reply being read */
    bool message;              /* that reply goes to hiredis' pub/sub dispatch */
    bool unsub;                /* and its kind is (p)unsubscribe */
};

/* hiredis' own reply builders (the same table for every reader). */
static redisReplyObjectFunctions *base_fn;
static redisReplyObjectFunctions checked_fn;

static void *refuse(struct cev *e, const char *why)
{
    struct cluster *cl = e->ac->data;

    if (cl != NULL) {
        wm_fmt(cl->last_error, sizeof(cl->last_error), "Redis sent %s", why);
        cl->reply_refused = true;
    }
    return NULL; /* hiredis drops the connection ("out of memory") */
}

/* Is the string s (len bytes, as hiredis compares it: up to a NUL) the
 * kind of an (p)unsubscribe message? */
static bool is_unsubscribe(const char *s, size_t len)
{
    size_t n = strnlen(s, len);

    if (n > 0 && tolower((unsigned char)s[0]) == 'p') {
        s++;
        n--;
    }
    return n == 11 && strncasecmp(s, "unsubscribe", 11) == 0;
}

/* Why hiredis would abort on this object (of type, with n elements for an
 * array, s/len for a string), or NULL. */
static const char *shape_refusal(const redisReadTask *task, int type, long long n,
                                 const char *s, size_t len)
{
    struct cev *e = task->privdata;
    const redisAsyncContext *ac = e->ac;
    const redisReadTask *top = task->parent;

    if (top == NULL) {
        /* a new reply: for a command's callback, or spontaneous */
        e->message = false;
        e->unsub = false;
        if (ac->replies.head != NULL || type == REDIS_REPLY_ERROR) {
            return NULL;
        }
        if (!(ac->c.flags & REDIS_SUBSCRIBED)) {
            return "a reply to no command";
        }
        e->message = type == REDIS_REPLY_ARRAY;
        return e->message && n < 2 ? "a pub/sub message without a kind and a channel" : NULL;
    }
    if (!e->message || top->parent != NULL) {
        return NULL; /* hiredis does not look deeper */
    }
    if (task->idx <= 1 && type != REDIS_REPLY_STRING) {
        return "a pub/sub message whose kind or channel is not a string";
    }
    if (task->idx == 0 && is_unsubscribe(s, len)) {
        e->unsub = true;
        if (top->elements < 3) {
            return "an unsubscribe message without its count";
        }
    }
    if (task->idx == 2 && e->unsub && type != REDIS_REPLY_INTEGER) {
        return "an unsubscribe message whose count is not an integer";
    }
    return NULL;
}

static void *create_string(const redisReadTask *task, char *s, size_t len)
{
    const char *why = shape_refusal(task, task->type, 0, s, len);

    return why != NULL ? refuse(task->privdata, why) : base_fn->createString(task, s, len);
}

static void *create_array(const redisReadTask *task, int n)
{
    struct cev *e = task->privdata;
    const char *why = shape_refusal(task, REDIS_REPLY_ARRAY, n, "", 0);

    if (why != NULL) {
        return refuse(e, why);
    }
    if (task->parent == NULL) {
        e->elements = 0; /* a new reply */
    }
    e->elements += n > 0 ? (size_t)n : 0;
    if (e->elements > CL_REPLY_ELEMENTS_MAX) {
        return refuse(e, "a reply of more than " STR(CL_REPLY_ELEMENTS_MAX) " elements");
    }
    return base_fn->createArray(task, n);
}

static void *create_integer(const redisReadTask *task, long long v)
{
    const char *why = shape_refusal(task, REDIS_REPLY_INTEGER, 0, "", 0);

    return why != NULL ? refuse(task->privdata, why) : base_fn->createInteger(task, v);
}

static void *create_nil(const redisReadTask *task)
{
    const char *why = shape_refusal(task, REDIS_REPLY_NIL, 0, "", 0);

    return why != NULL ? refuse(task->privdata, why) : base_fn->createNil(task);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct cev *e = arg;
    redisAsyncContext *ac = e->ac;
    struct cluster *cl = ac->data;

    (void)fd;
    (void)what;
    redisAsyncHandleRead(ac); /* may free ac and e */
    if (cl == NULL || cl->closing || (cl->cmd != ac && cl->sub != ac)) {
        return;
    }
    const redisReader *r = ac->c.reader;
    if (r->len - r->pos > CL_REPLY_BYTES_MAX) {
        wm_fmt(cl->last_error, sizeof(cl->last_error), "Redis sent a reply of more than %d MiB",
               CL_REPLY_BYTES_MAX >> 20);
        credis_lost(cl, cl->last_error); /* frees ac */
    }
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct cev *e = arg;

    (void)fd;
    (void)what;
    redisAsyncHandleWrite(e->ac);
}

static void add_read(void *arg)
{
    event_add(((struct cev *)arg)->rev, NULL);
}

static void del_read(void *arg)
{
    event_del(((struct cev *)arg)->rev);
}

static void add_write(void *arg)
{
    event_add(((struct cev *)arg)->wev, NULL);
}

static void del_write(void *arg)
{
    event_del(((struct cev *)arg)->wev);
}

static void cleanup(void *arg)
{
    struct cev *e = arg;

    event_free(e->rev);
    event_free(e->wev);
    free(e);
}

int cev_attach(redisAsyncContext *ac, struct event_base *base)
{
    redisReader *r = ac->c.reader;
    struct cev *e;

    if (ac->ev.data != NULL || r == NULL || (e = calloc(1, sizeof(*e))) == NULL) {
        return -1;
    }
    e->ac = ac;
    e->rev = event_new(base, ac->c.fd, EV_READ, on_read, e);
    e->wev = event_new(base, ac->c.fd, EV_WRITE, on_write, e);
    if (e->rev == NULL || e->wev == NULL) {
        if (e->rev != NULL) {
            event_free(e->rev);
        }
        if (e->wev != NULL) {
            event_free(e->wev);
        }
        free(e);
        return -1;
    }
    if (base_fn == NULL) {
        base_fn = r->fn;
        checked_fn = *base_fn;
        checked_fn.createString = create_string;
        checked_fn.createArray = create_array;
        checked_fn.createInteger = create_integer;
        checked_fn.createNil = create_nil;
    }
    r->fn = &checked_fn;
    r->privdata = e;
    ac->ev.data = e;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    event_add(e->rev, NULL);
    event_add(e->wev, NULL);
    return 0;
}
