/*
 * cluster/cluster_ev.c - hiredis on worker 0's event base, with bounded
 * replies.
 *
 * hiredis buffers a reply until it is whole and builds every element an
 * array announces, with no limit of its own: a Redis (or whatever answers
 * on its port) sending "$99999999999" or "*2000000000" and then bytes
 * without end would take all our memory. Each connection's reader is
 * checked after every read (the part of a reply not yet parsed, at most
 * CL_REPLY_BYTES_MAX) and its arrays are counted as they are announced (at
 * most CL_REPLY_ELEMENTS_MAX elements per reply, nested ones included); a
 * reply past either is a lost connection (credis_lost), as for any
 * protocol error.
 */
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>

#include "cluster/cluster_int.h"
#include "core/util.h"

struct cev {
    redisAsyncContext *ac;
    struct event *rev;
    struct event *wev;
    size_t elements;           /* announced by the arrays of the reply being read */
};

/* hiredis' own reply builders (the same table for every reader). */
static redisReplyObjectFunctions *base_fn;
static redisReplyObjectFunctions bounded_fn;

static void *create_array(const redisReadTask *task, int n)
{
    struct cev *e = task->privdata;
    struct cluster *cl = e->ac->data;

    if (task->parent == NULL) {
        e->elements = 0; /* a new reply */
    }
    e->elements += n > 0 ? (size_t)n : 0;
    if (e->elements > CL_REPLY_ELEMENTS_MAX) {
        if (cl != NULL) {
            wm_fmt(cl->last_error, sizeof(cl->last_error), "Redis sent a reply of more than "
                   "%d elements", CL_REPLY_ELEMENTS_MAX);
            cl->reply_too_big = true;
        }
        return NULL; /* hiredis drops the connection ("out of memory") */
    }
    return base_fn->createArray(task, n);
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
        bounded_fn = *base_fn;
        bounded_fn.createArray = create_array;
    }
    r->fn = &bounded_fn;
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
