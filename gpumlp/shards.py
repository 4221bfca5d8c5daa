"""Persistent worker state for training on Dask: one actor per worker, holding its chunks.

When a fit begins, each worker that holds chunks of the training data gets a
:class:`Shard`, a Dask actor that keeps those chunks, cast once to the
training dtype on the worker's device (NumPy, or CuPy on GPU workers), for
the whole fit. A step is then one message to each shard and one answer back,
straight between the driver and the workers, with no task and no scheduler
in between: the driver sends the current weights (small, host NumPy) and the
batch's chunk ids; each shard computes, for each of its chunks
in the batch, the chunk's sum of losses and its share of the gradient (the
same kernels as in-process training, the backend's fast path where
:func:`gpumlp.fastpath.select` offers one), laid end to end in one vector.
No task graph is built per step.

The driver adds the chunks' vectors as a pairwise tree in chunk order
(:func:`tree_sum`), whichever worker computed them: the sum, and so the
trained model, are the same bits on any number of workers and after any
reassignment of chunks. (The vectors are the size of the weights, so adding
them on the driver costs microseconds; a tree *between* workers would add a
network hop per level to every step.)

A lost worker: the driver keeps Dask futures of every chunk, so when a shard
cannot be reached the scheduler recomputes the lost chunks from their task
graph (the files, or the arrays the graph holds) on the workers that remain;
:meth:`Placement.replace` then waits for them, places fresh shards where the
chunks now are, and the step is sent again with the same weights. Since the
sum does not depend on the placement, the fit goes on exactly as if no worker
had been lost.

How a message travels. Each shard is placed as a Dask actor, and once
placed the driver asks it, through Dask, to open a *channel*: a TCP socket
of its own on the worker's address, served by one thread of the shard, to
which the driver connects and proves itself with a random token it sent
through Dask. A step is then a pickled request written to each channel and
an answer read back from each, in the calling thread: no event loop, no
Dask message layer, no thread hop on the driver; the workers compute while
the driver writes to the next. (Dask's own actor calls cost about 0.7 ms of
driver CPU and 1-2 ms of worker CPU per call, mostly its message layer and
event-loop hops: at 8 workers on 2 cores, more than the step's arithmetic.)
A channel carries what Dask's plain ``tcp://`` comms would, unencrypted, so
it is opened only on ``tcp://`` workers; on others (``tls://``, ``inproc://``,
``ucx://``), with a client that says ``direct_to_workers=False``, or when a
worker cannot be reached, the actor is called through Dask: straight through
the worker's RPC, or relayed by the scheduler. Channels close with the
placement (and the serving threads end), when a worker is lost, and at the
end of a fit.

Through Dask, small shards compute on the worker's event loop (no thread
hop); a shard with more than :data:`INLINE_ROWS` rows in a call computes in
the worker's actor thread, so the worker keeps answering the scheduler. A
channel's thread always computes off the event loop.
"""

from __future__ import annotations

import asyncio
import pickle
import secrets
import socket
import struct
import threading
import weakref

import numpy as np

from . import fastpath, kernels
from .devices import device_of, to_numpy

__all__ = ["CONNECT_TIMEOUT", "INLINE_ROWS", "PLACE_TIMEOUT", "Placement", "Shard",
           "loss_and_grads_of", "tree_sum"]

#: Rows above which a shard computes in a thread rather than on the event loop.
INLINE_ROWS = 100_000
#: Seconds to wait for the chunks (recomputed after a loss) and the shards.
PLACE_TIMEOUT = 120
#: Seconds a shard waits for the driver to connect to its channel, and the
#: driver to connect.
CONNECT_TIMEOUT = 10


def tree_sum(vectors):
    """``vectors`` added as a pairwise tree, in their order: ``((v0 + v1) + (v2 + v3)) + ...``."""
    while len(vectors) > 1:
        vectors = [vectors[j] + vectors[j + 1] if j + 1 < len(vectors) else vectors[j]
                   for j in range(0, len(vectors), 2)]
    return vectors[0]


def loss_and_grads_of(sums: np.ndarray, params: list, n_total: float, n_outputs: int,
                      dtype: np.dtype) -> tuple:
    """``(loss, grads)`` from a batch's summed vector (see :meth:`Shard.sums`).

    The one conversion, on the driver after a step and on a shard that runs
    epochs itself (:meth:`Shard.epochs`), so that both give the same bits.

    Parameters
    ----------
    sums : ndarray, shape (1 + total size of params,)
        The batch's sum of losses, then its gradients end to end.
    params : list of arrays
        ``coefs + intercepts``, for the gradients' shapes.
    n_total : float
        Rows in the batch, or their sum of weights.
    n_outputs : int
    dtype : numpy.dtype
        The training dtype.
    """
    loss = np.asarray(sums[0] / dtype.type(n_total * n_outputs), dtype=dtype)
    grads, at = [], 1
    for p in params:
        grads.append(np.asarray(sums[at:at + p.size].reshape(p.shape), dtype=dtype))
        at += p.size
    return loss, grads


class _HeldBatch:
    """One shard's chunks as a batch source of one full batch, for :meth:`Shard.epochs`."""

    def __init__(self, shard, ids, n_total, n_outputs, dtype):
        self.shard, self.ids, self.n_total = shard, ids, n_total
        self.n_outputs, self.dtype = n_outputs, np.dtype(dtype)

    def loss_and_grads(self, batch, coefs, intercepts, network):
        params = [*coefs, *intercepts]
        flat = np.concatenate([np.reshape(np.asarray(p, dtype=self.dtype), -1)
                               for p in params])
        vectors = self.shard.sums(self.ids, flat, [tuple(p.shape) for p in params],
                                  network.n_coefs, network.activation.name, self.n_total,
                                  network.fastpath, network.loss.name)
        return (*loss_and_grads_of(tree_sum(list(vectors)), params, self.n_total,
                                   self.n_outputs, self.dtype), self.n_total)


def _placed(X, y, w, dtype):
    """A chunk in the training dtype, ``y`` 2-D, on the device it lives on (no copy if it is)."""
    from array_api_compat import array_namespace

    xp = array_namespace(X)
    target = getattr(xp, dtype)
    X, y = _cast(xp, X, target, "X", dtype), _cast(xp, y, target, "y", dtype)
    if y.ndim == 1:
        y = xp.reshape(y, (-1, 1))
    if w is not None:
        w = device_of(X).asarray(w)
        w = w if w.dtype == target else xp.astype(w, target)
    return X, y, w


def _cast(xp, a, target, name, dtype):
    """``a`` in ``target`` (itself if it already is); refused if the cast overflows.

    The chunks were checked finite as given: a value the cast makes infinite
    is too large for the training dtype.
    """
    if a.dtype == target:
        return a
    with np.errstate(over="ignore", invalid="ignore"):
        a = xp.astype(a, target)
    if not bool(xp.all(xp.isfinite(a))):
        raise ValueError(f"{name} holds values too large for {dtype} (they overflow to "
                         f"infinity); pass dtype='float64' (on the command line: --dtype "
                         f"float64), or rescale {name}.")
    return a


class Shard:
    """A Dask actor: one worker's chunks of one fit, placed and cast once.

    Parameters
    ----------
    ids : list of int
        The chunks' ids (their positions in the training data).
    X, y, w : lists of arrays
        The chunks (``w`` entries None without weights), as Dask hands them
        to the worker that holds them.
    dtype : str
        The training dtype's name.
    """

    def __init__(self, ids, X, y, w, dtype):
        self.chunks = {i: _placed(a, b, c, dtype) for i, a, b, c in zip(ids, X, y, w)}

    def run(self, request):
        """``request = (method, args)``: one call of :meth:`sums` or :meth:`evaluate`.

        The driver sends a call as this one argument: Dask serialises each
        argument of an actor call separately, and at a few hundred
        microseconds each, eight small arguments cost more than the step.
        """
        method, args = request
        if method == "ready":
            return True
        if method == "channel":
            return self._open_channel(*args)
        if method not in ("sums", "evaluate", "epochs"):
            raise ValueError(f"a shard runs sums, evaluate or epochs, not {method!r}")
        return getattr(self, method)(*args)

    def _open_channel(self, host, token):
        """Listen on ``host`` for the driver's connection; the port (see the module docs).

        One connection is accepted, within :data:`CONNECT_TIMEOUT` seconds,
        and only if it starts with ``token``. The serving thread holds the
        shard by a weak reference: when Dask releases the actor, its chunks
        go, whatever the thread is doing.
        """
        listener = socket.create_server(
            (host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        listener.settimeout(CONNECT_TIMEOUT)
        threading.Thread(target=_serve, args=(listener, token, weakref.ref(self)),
                         name="gpumlp-shard-channel", daemon=True).start()
        return listener.getsockname()[1]

    def _params(self, ids, flat, shapes):
        """The weights, as views of the one vector they travel in, on the chunks' device."""
        params, at = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            params.append(flat[at:at + size].reshape(shape))
            at += size
        place = device_of(self.chunks[ids[0]][0])
        return params if place.is_numpy else [place.asarray(p) for p in params]

    def sums(self, ids, flat, shapes, n_coefs, activation, n_total, use_fastpath, loss_kind):
        """For each chunk of ``ids``: its sum of losses, then its share of the gradient.

        ``flat`` holds the weights ``coefs + intercepts`` end to end, of
        ``shapes`` (one buffer to send rather than one per array).

        Returns
        -------
        ndarray, shape (len(ids), 1 + flat.size)
            Per chunk, ``[loss sum, coef grads..., intercept grads...]`` laid
            end to end, in the training dtype, on the host.
        """
        params = self._params(ids, flat, shapes)
        coefs, intercepts = params[:n_coefs], params[n_coefs:]
        out = []
        for i in ids:
            X, y, w = self.chunks[i]
            # Never the opt-in CUDA tile kernels: chunks are for data larger than they serve.
            fast = fastpath.select(X, n_coefs, activation, enabled=use_fastpath,
                                   cuda_graph=False, loss_kind=loss_kind, weighted=w is not None)
            if fast is not None:
                loss, coef_grads, intercept_grads = fast(X, y, coefs, intercepts,
                                                         n_total=n_total)
            else:
                loss, coef_grads, intercept_grads = kernels.loss_and_grads(
                    X, y, coefs, intercepts, activation, n_total=n_total, sample_weight=w,
                    loss_kind=loss_kind)
            total = float(y.shape[0]) if w is None else _xp(w).sum(w)
            summed = loss * total * float(y.shape[1])
            out.append(_flat([summed, *coef_grads, *intercept_grads]))
        return np.stack(out)

    def epochs(self, ids: list, params: list, network, solver, alpha: float, n_total: float,
               n_outputs: int, rates: list) -> list:
        """Epochs of full-batch gradient descent on chunks ``ids``, all held here.

        Each epoch is the driver's step (:meth:`gpumlp.training.Trainer.objective`
        and the solver's update, on the chunks' vectors added as
        :func:`tree_sum` adds them there), so the epochs are the same bits as
        one round trip each would give.

        Parameters
        ----------
        ids : list of int
            Every chunk of the batch.
        params : list of ndarray
            ``coefs + intercepts`` at the block's start, host NumPy.
        network : gpumlp.sources.Network
        solver : gpumlp.solvers.SGD
            Without momentum (its state is the rate alone).
        alpha : float
        n_total : float
            Rows in the batch, or their sum of weights.
        n_outputs : int
        rates : list of float
            Each epoch's learning rate.

        Returns
        -------
        list of (params, loss, finite)
            Per epoch, as :meth:`gpumlp.fastpath.compiled.CompiledBlocks.run`.
        """
        from .solvers import SGDState
        from .training import Trainer, _all_finite

        trainer = Trainer(network, solver, alpha, list(params))
        batch = _HeldBatch(self, ids, n_total, n_outputs, params[0].dtype)
        out = []
        for rate in rates:
            trainer.params, _, loss = solver.update(trainer.params, SGDState(rate),
                                                    trainer.objective(batch, ids))
            out.append((list(trainer.params), loss, _all_finite(trainer.params)))
        return out

    def evaluate(self, ids, flat, shapes, n_coefs, activation, loss_kind):
        """For each chunk of ``ids``, weighted: per output the squared errors, the sum of
        ``y``, the sum of squares about the chunk's own mean, and the largest and
        smallest ``y`` of the rows that weigh; then the sum of losses and the sum of
        weights, end to end (one row per chunk). The driver combines the chunks'
        spreads about their means (:func:`combined_r2`): sums of ``y**2`` less
        ``(sum y)**2 / n`` cancelled to nothing for a y far from 0."""
        from .losses import get_loss

        params = self._params(ids, flat, shapes)
        loss = get_loss(loss_kind)
        out = []
        for i in ids:
            X, y, w = self.chunks[i]
            xp = _xp(X)
            y_pred = kernels.predict(X, params[:n_coefs], params[n_coefs:], activation,
                                     loss.out_activation)
            diff = y_pred - y
            ww = xp.ones((y.shape[0], 1), dtype=y.dtype) if w is None else \
                xp.reshape(w, (-1, 1))
            total, weight = xp.sum(ww * y, axis=0), xp.sum(ww)
            # No host read (a CuPy chunk would sync): a weightless chunk's mean is
            # 0 / 1, and its spread 0, as it weighs nothing in the combination.
            mean = total / xp.where(weight > 0, weight, xp.ones_like(weight))
            centred = y - mean
            inf = xp.full_like(y, float("inf"))
            out.append(_flat([xp.sum(ww * diff * diff, axis=0), total,
                              xp.sum(ww * centred * centred, axis=0),
                              xp.max(xp.where(ww > 0, y, -inf), axis=0),
                              xp.min(xp.where(ww > 0, y, inf), axis=0),
                              xp.sum(ww * loss.pointwise(y, y_pred)), weight]))
        return np.stack(out)


def combined_r2(vectors: list, k: int) -> tuple:
    """``(R² per output, sum of losses, sum of weights)`` from :meth:`Shard.evaluate`'s
    chunk rows, in chunk order: the spreads about each chunk's mean combined
    (Chan, Golub and LeVeque's pairwise rule, weighted), and a target that is
    constant over the rows that weigh known by its values (R² 1 if predicted
    exactly, else 0, as :func:`gpumlp.metrics.r2_score`)."""
    rows = np.stack([np.asarray(v, dtype=np.float64) for v in vectors])
    sse, totals, spreads = rows[:, :k], rows[:, k:2 * k], rows[:, 2 * k:3 * k]
    tops, bottoms = rows[:, 3 * k:4 * k], rows[:, 4 * k:5 * k]
    losses, weights = rows[:, 5 * k], rows[:, 5 * k + 1]
    weight = weights.sum()
    mean = totals.sum(axis=0) / weight
    means = np.divide(totals, weights[:, None], out=np.zeros_like(totals),
                      where=weights[:, None] > 0)
    sst = spreads.sum(axis=0) + (weights[:, None] * (means - mean) ** 2).sum(axis=0)
    sst = np.where(tops.max(axis=0) > bottoms.min(axis=0), sst, 0.0)
    sse = tree_sum(list(sse))
    safe = np.where(sst > 0, sst, 1.0)
    r2 = np.where(sst > 0, 1.0 - sse / safe, (sse == 0).astype(np.float64))
    return r2, float(tree_sum(list(losses))), float(weight)


def _xp(x):
    from array_api_compat import array_namespace

    return array_namespace(x)


def _flat(values):
    """Host NumPy values laid end to end in one vector."""
    return np.concatenate([np.reshape(to_numpy(v), -1) for v in values])


# ------------------------------------------------------------------ channels
_LENGTH = struct.Struct("!Q")


def _send(sock, value):
    """``value`` pickled, after its length."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _receive_exactly(sock, size):
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("the other end of a shard channel closed it")
        got += n
    return buffer


def _receive(sock):
    """One value sent by :func:`_send`; ``ConnectionError`` at the end of the stream."""
    (size,) = _LENGTH.unpack(_receive_exactly(sock, _LENGTH.size))
    return pickle.loads(_receive_exactly(sock, size))


def _serve(listener, token, shard_ref):
    """A shard's channel, in its own thread on the worker: answer requests until closed.

    Each request is a :meth:`Shard.run` call; the answer is ``(True,
    result)`` or ``(False, exception)``. The thread ends when the driver
    closes the connection, or when no driver came.
    """
    try:
        conn, _ = listener.accept()
    except OSError:
        return
    finally:
        listener.close()
    with conn:
        try:
            conn.settimeout(CONNECT_TIMEOUT)
            if not secrets.compare_digest(bytes(_receive_exactly(conn, len(token))), token):
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keep_alive(conn)  # a driver gone without a word ends the thread
            while True:
                request = _receive(conn)
                shard = shard_ref()
                if shard is None:
                    return
                try:
                    answer = (True, shard.run(request))
                except Exception as exc:
                    # Without its traceback, whose frames hold the shard.
                    answer = (False, _picklable(exc.with_traceback(None)))
                del shard
                _send(conn, answer)
                del answer
        except OSError:
            return


def _picklable(exc):
    """``exc``, or a ``RuntimeError`` saying what it was if it cannot be pickled."""
    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _exchange(channels, requests):
    """Each request written to its channel, then each answer read, in order.

    Returns each shard's ``(True, result)`` or ``(False, exception)``: every
    answer is read, so the channels stay in step. A broken channel raises its
    ``OSError``.
    """
    for sock, request in zip(channels, requests):
        _send(sock, request)
    return [_receive(sock) for sock in channels]


def _keep_alive(sock):
    """Probe an idle connection, as Dask's TCP comms do, so a vanished peer is noticed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 10)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


async def _call_all(calls):
    """Each ``(rpc, key, request, threaded)``'s answer from the actor ``key``, concurrently."""
    from distributed.protocol import to_serialize

    async def one(rpc, key, request, threaded):
        answer = await rpc.actor_execute(function="run", actor=key,
                                         args=[to_serialize(request)],
                                         kwargs={"separate_thread": threaded})
        if answer["status"] != "OK":
            raise answer["exception"]
        return answer["result"]

    return await asyncio.gather(*(one(*call) for call in calls))


class Placement:
    """Which worker's shard holds which chunk, for one set of held chunks.

    Parameters
    ----------
    client : distributed.Client
    X, y, w : lists of futures
        Every chunk, held by the driver for the whole fit (``w`` entries None
        without weights).
    rows : list of int
        Each chunk's rows.
    """

    def __init__(self, client, X, y, w, rows):
        self.client, self.X, self.y, self.w, self.rows = client, X, y, w, list(rows)
        self.dtype = None
        self.shards = []     # (worker address, actor key)
        self.owner = {}      # chunk id -> index into shards
        self._futures = []   # the actors' futures: the actors live as long as these
        self._workers = set()
        # Straight to the workers (Dask relays an actor call through the
        # scheduler unless the client says direct_to_workers=True; that costs
        # two more messages a step), unless the client forbids it, or the
        # workers turn out to be out of this process's reach.
        self._direct = client.direct_to_workers is not False
        #: One socket per shard (see the module docs), or None: called through Dask.
        self._channels = None

    def ensure(self, dtype):
        """Place shards (once, or again for another dtype)."""
        if self.dtype != dtype or not self.shards:
            self.dtype = dtype
            self.replace()

    def replace(self):
        """Shards on the workers that hold the chunks now (after a worker was lost, too)."""
        from distributed import wait

        client = self.client
        self.close()
        self.shards, self.owner = [], {}
        held = [f for f in self.X + self.y + self.w if f is not None]
        wait(held, timeout=PLACE_TIMEOUT)
        who = client.who_has(self.X)
        by_worker = {}
        for i, future in enumerate(self.X):
            holders = sorted(who.get(future.key, ()))
            if not holders:
                raise RuntimeError(f"chunk {i} is held by no worker")
            by_worker.setdefault(holders[0], []).append(i)
        futures, shards = [], []
        for address, ids in sorted(by_worker.items()):
            futures.append(client.submit(
                Shard, ids, [self.X[i] for i in ids], [self.y[i] for i in ids],
                [self.w[i] for i in ids], self.dtype, actor=True, workers=[address],
                allow_other_workers=False, pure=False))
            shards.append((address, futures[-1].key))
            for i in ids:
                self.owner[i] = len(futures) - 1
        self._futures = futures
        try:
            # A worker that died since who_has answered never takes its actor:
            # a timeout (an OSError) then lets the caller place them again.
            wait(futures, timeout=PLACE_TIMEOUT)
        except BaseException:
            client.cancel(futures)
            raise
        for future in futures:
            if future.status == "error":   # a shard refused its chunks (ValueError)
                future.result()
        # The actors are called by key through the workers' RPC, as Dask's
        # Actor proxies call them; the proxies' closures form reference
        # cycles that would keep the actors, and the chunks, alive after the
        # fit until the garbage collector ran.
        self.shards = shards
        self._workers = set(client.scheduler_info()["workers"])
        self._wait_until_ready()
        self._channels = self._connect()

    def _connect(self):
        """A channel to every shard, or None where one cannot be had (see the module docs)."""
        from distributed.comm.addressing import parse_address, parse_host_port

        if not self._direct:
            return None
        hosts = []
        for address, _ in self.shards:
            protocol, location = parse_address(address)
            if protocol != "tcp":
                return None
            hosts.append(parse_host_port(location)[0])
        token = secrets.token_bytes(32)
        channels = []
        try:
            ports = self.client.sync(_call_all, [
                (self._rpc(address), key, ("channel", (host, token)), False)
                for (address, key), host in zip(self.shards, hosts)])
            for host, port in zip(hosts, ports):
                sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
                channels.append(sock)
                sock.sendall(token)
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _keep_alive(sock)
        except OSError:
            for sock in channels:
                sock.close()
            return None
        return channels

    def __del__(self):
        self.close()

    def release(self) -> list:
        """Close the channels and let go of the shards: their futures, to be released."""
        self.close()
        futures, self._futures, self.shards, self.owner = self._futures, [], [], {}
        return futures

    def close(self) -> None:
        """Close the channels: their threads on the workers end."""
        channels, self._channels = self._channels, None
        for sock in channels or ():
            sock.close()

    def _wait_until_ready(self, timeout=10.0):
        """Every shard answers (an actor Dask reports finished may not be set up yet)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.sync(_call_all, [(self._rpc(address), key, ("ready", ()), False)
                                             for address, key in self.shards])
                return
            except OSError:
                if not self._direct:
                    raise
                # The workers cannot be reached from here: through the scheduler, then.
                self._direct = False
            except Exception as exc:
                if "NoneType" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _rpc(self, address):
        """The way to a worker: straight to it, or relayed by the scheduler."""
        if self._direct:
            return self.client.rpc(address)
        from distributed.actor import ProxyRPC

        return ProxyRPC(self.client.scheduler, address)

    def call(self, method, ids, *args):
        """``method`` of every shard holding chunks of ``ids``: each chunk's vector, by id."""
        groups = {}
        for i in ids:
            groups.setdefault(self.owner[i], []).append(i)
        order = list(groups.items())
        answers = self._send([(s, (method, (group, *args)),
                               sum(self.rows[i] for i in group) > INLINE_ROWS)
                              for s, group in order])
        out = {}
        for (_, group), vectors in zip(order, answers):
            out.update(zip(group, vectors))
        return out

    def holder(self, ids: list) -> int | None:
        """The one shard that holds every chunk of ``ids``, or None."""
        holders = {self.owner[i] for i in ids}
        return holders.pop() if len(holders) == 1 else None

    def call_one(self, shard: int, request: tuple):
        """``request`` (``(method, args)``) of one shard, off the worker's event loop."""
        return self._send([(shard, request, True)])[0]

    def _send(self, requests):
        """Each ``(shard, request, threaded)``'s answer: on the channels, or through Dask."""
        if self._channels is not None:
            try:
                answers = _exchange([self._channels[s] for s, _, _ in requests],
                                    [request for _, request, _ in requests])
            except BaseException:
                # Out of step (a lost worker, Ctrl-C while waiting): closed;
                # after a lost worker the caller places the shards again.
                self.close()
                raise
            for ok, value in answers:
                if not ok:
                    raise value
            return [value for _, value in answers]
        return self.client.sync(_call_all, [
            (self._rpc(self.shards[s][0]), self.shards[s][1], request, threaded)
            for s, request, threaded in requests])

    def recoverable(self, exc, timeout=30.0) -> bool:
        """Whether ``exc`` came from a lost worker, once the scheduler has seen the loss.

        An unreachable worker (``OSError``) or an actor Dask reports lost is
        waited for, up to ``timeout`` seconds, until the scheduler's list of
        workers has changed; an error raised by the computation itself is not
        recoverable.
        """
        import time

        try:
            if not (isinstance(exc, OSError) or "Actor was lost" in str(exc) or self.lost()):
                return False
            deadline = time.monotonic() + timeout
            while not self.lost():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
            return True
        except Exception:  # the scheduler itself unreachable: nothing to recover
            return False

    def lost(self) -> bool:
        """Whether the cluster's workers changed since the shards were placed, or an
        actor is gone."""
        workers = set(self.client.scheduler_info()["workers"])
        return workers != self._workers or any(f.status != "finished" for f in self._futures)
