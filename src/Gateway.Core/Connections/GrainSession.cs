using System.Diagnostics;
using Orleans.Runtime.Placement;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// The connection's side of its grain: which grain it is (a new one at each <c>SetProtocol</c>), where it lives, and
/// every callback the pump makes to it — one at a time, each awaited before the next, so callbacks reach the grain in
/// order on any topology. Calls are made outside any grain turn, so Orleans registers the observer with the silo's
/// hosted client.
/// </summary>
/// <remarks>Used by the pump only (one callback in flight); <see cref="GrainSilo"/> is also read by the cluster watch.</remarks>
internal sealed class GrainSession(GatewayConnection connection, ListenerContext listener, GrainId grainId)
{
    /// <summary>Deliveries of one grain call Orleans may reject (undelivered) before the connection gives up on its grain.</summary>
    internal const int MaxGrainCallAttempts = 3;

    private IProtocolGrain _grain = listener.GrainFactory.GetGrain<IProtocolGrain>(grainId);
    private string? _grainSilo;

    /// <summary>The silo the grain lives on, as its <c>ConnectionMade</c> reply or a move said; null once detached.</summary>
    public string? GrainSilo
    {
        get => Volatile.Read(ref _grainSilo);
        set => Volatile.Write(ref _grainSilo, value);
    }

    /// <summary>The connection goes to another grain (<c>SetProtocol</c>); the pump calls it next.</summary>
    public void Retarget(GrainId grain) => _grain = listener.GrainFactory.GetGrain<IProtocolGrain>(grain);

    /// <summary>The grain says it lives on <paramref name="silo"/> now: follow it (logged when it moved).</summary>
    public void Moved(string silo)
    {
        if (Interlocked.Exchange(ref _grainSilo, silo) is { } previous && previous != silo)
        {
            GatewayLog.GrainMoved(listener.Logger, connection.Id, silo);
        }
    }

    /// <summary>How long <c>ConnectionMade</c> goes unanswered before it is sent again (see <see cref="ConnectionMadeAsync"/>).</summary>
    internal static readonly TimeSpan ConnectionMadeResendAfter = TimeSpan.FromSeconds(5);

    /// <summary>
    /// <c>ConnectionMade</c>, which activates the grain: a placement hint on this one call decides its silo, picked
    /// again for each attempt, so a call rejected because its silo was declared dead goes to a silo membership still
    /// counts. A call that goes unanswered for <see cref="ConnectionMadeResendAfter"/> is sent again as well, as many
    /// times as fit in Orleans' response timeout: during a partition, a grain placed on the silo being cut off, or a
    /// directory lookup sent there, waits for that timeout (30 s) even after the silo is voted out, while a new call
    /// is placed and looked up afresh. A resend cannot open the connection twice: a grain that already took it
    /// answers "unknown connection", and then the first call's answer is the one awaited.
    /// </summary>
    public async Task<ProtocolReply> ConnectionMadeAsync()
    {
        var started = Stopwatch.GetTimestamp();
        var first = ConnectionMadeOnceAsync();
        var reply = await ResendUnansweredAsync(first);
        listener.Metrics.GrainCall(listener.Name, "connection_made", started);
        GrainSilo = reply.GrainSilo;
        return reply;
    }

    private async Task<ProtocolReply> ResendUnansweredAsync(Task<ProtocolReply> first)
    {
        var attempts = new List<Task<ProtocolReply>> { first };
        var undelivered = 0;
        for (var resends = 0; resends < 5; resends++)
        {
            using var wait = new CancellationTokenSource();
            var delay = Task.Delay(ConnectionMadeResendAfter, listener.Time, wait.Token);
            if (await Task.WhenAny(attempts[^1], delay) == attempts[^1])
            {
                wait.Cancel();
                if (!IsUndelivered(attempts[^1]) || ++undelivered > MaxUndeliveredConnectionMade)
                {
                    break;
                }

                // Orleans could not deliver it: the silo it was placed on, or the one holding its directory entry, is
                // dying and not declared dead yet. The grain never saw it; send it again shortly, placed and looked up
                // afresh, until membership catches up.
                GatewayLog.GrainCallRejected(listener.Logger, connection.Id, undelivered, attempts[^1].Exception!.InnerException!.Message);
                attempts.RemoveAt(attempts.Count - 1);
                await Task.Delay(UndeliveredRetryAfter, listener.Time);
                attempts.Add(ConnectionMadeOnceAsync());
                resends--;
                continue;
            }

            GatewayLog.ConnectionMadeResent(listener.Logger, connection.Id, ConnectionMadeResendAfter);
            _ = attempts[^1].ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            attempts.Add(ConnectionMadeOnceAsync());
        }

        var reply = await attempts[^1];
        attempts.RemoveAt(attempts.Count - 1);

        // A resend that found the grain holding the connection already: an earlier attempt reached it, and its answer
        // is the one that counts. Wait for the earlier attempt that answers as the connection's grain.
        while (reply.Status == ProtocolReplyStatus.UnknownConnection && attempts.Count > 0)
        {
            var done = await Task.WhenAny(attempts);
            attempts.Remove(done);
            if (done.IsCompletedSuccessfully && done.Result.Status != ProtocolReplyStatus.UnknownConnection)
            {
                reply = done.Result;
            }
        }

        return reply;
    }

    /// <summary>How long after an undelivered <c>ConnectionMade</c> it goes again, and how many times at most (~10 s: failure detection).</summary>
    private static readonly TimeSpan UndeliveredRetryAfter = TimeSpan.FromSeconds(1);

    private const int MaxUndeliveredConnectionMade = 10;

    private static bool IsUndelivered(Task task) =>
        task.IsFaulted && task.Exception!.InnerException is OrleansMessageRejectionException or SiloUnavailableException;

    private Task<ProtocolReply> ConnectionMadeOnceAsync() =>
        CallAsync(connection, (grain, c) => Placed(() => grain.ConnectionMade(c.Info, c.Listener.Observer)));

    /// <summary>
    /// Makes a call that may activate the grain with the listener's placement hint (when it picks a silo) on that call
    /// alone: <c>ConnectionMade</c>, and <c>Wake</c> after hibernation.
    /// </summary>
    private Task<T> Placed<T>(Func<Task<T>> call)
    {
        if (listener.Siting.PickSilo(connection.Id) is not { } silo)
        {
            return call();
        }

        RequestContext.Set(IPlacementDirector.PlacementHintKey, silo);
        try
        {
            return call();
        }
        finally
        {
            RequestContext.Remove(IPlacementDirector.PlacementHintKey);
        }
    }

    // The inbound callbacks, the hot path: the pump awaits Orleans' task itself and sends a rejected one again (see
    // CallAsync), so a request costs no async frame here.
    public Task<ProtocolReply> DataReceived(byte[] data)
    {
        GatewayLog.DataDelivered(listener.Logger, connection.Id, data.Length);
        return _grain.DataReceived(data, connection.ProtocolBytesSent);
    }

    public Task<ProtocolReply> FramesReceived(ReadOnlyMemory<byte>[] frames) => _grain.FramesReceived(frames, connection.ProtocolBytesSent);

    public Task<ProtocolReply> EofReceived() => _grain.EofReceived(connection.ProtocolBytesSent);

    public Task<ProtocolReply> WriteFlowAsync((bool Pause, long BytesSent) flow) =>
        CallAsync(flow, static (grain, f) => f.Pause ? grain.PauseWriting(f.BytesSent) : grain.ResumeWriting(f.BytesSent));

    public Task<ProtocolReply> CloseRequestedAsync(ConnectionCloseReason reason, string? detail) =>
        CallAsync((Connection: connection, Reason: reason, Detail: detail), static (grain, s) => grain.CloseRequested(s.Reason, s.Detail, s.Connection.ProtocolBytesSent));

    public Task<ProtocolReply> TlsStartedAsync() =>
        CallAsync(connection, static (grain, c) => grain.TlsStarted(c.Info.Tls!, c.ProtocolBytesSent));

    /// <summary>
    /// Asks the grain where it is (its last known silo ended after stopping gracefully): a moved grain answers with its
    /// silo and the connection follows it; an activation without the connection answers "unknown connection".
    /// </summary>
    public async Task<ProtocolReply> LocateAsync()
    {
        var reply = await CallAsync(connection, static (grain, c) => grain.Locate(c.ProtocolBytesSent));
        if (reply.Status != ProtocolReplyStatus.UnknownConnection && reply.GrainSilo is { } silo && GrainSilo is not null)
        {
            Moved(silo);
        }

        return reply;
    }

    /// <summary>Tells the grain the connection ended; a failure is logged, never thrown (the connection is gone either way).</summary>
    public async Task ConnectionLostAsync(ConnectionCloseReason reason, string? detail)
    {
        try
        {
            await CallAsync((Reason: reason, Detail: detail), static async (grain, s) =>
            {
                await grain.ConnectionLost(s.Reason, s.Detail);
                return true;
            });
        }
        catch (Exception ex)
        {
            GatewayLog.ConnectionLostFailed(listener.Logger, connection.Id, ex);
        }
    }

    /// <summary>
    /// Asks the grain to hibernate (the connection was quiet for <c>HibernateAfter</c>). A grain that does hands over
    /// its state and deactivates: it no longer lives on any silo until it wakes.
    /// </summary>
    public async Task HibernateAsync()
    {
        var state = await CallAsync(connection, static (grain, c) => grain.Hibernate(c.ProtocolBytesSent));
        if (state is not null)
        {
            GrainSilo = null;
            GatewayLog.Hibernated(listener.Logger, connection.Id, state.Length);
        }

        connection.Sleep.Answered(state, ConnectionClock.Now(listener.Time));
    }

    /// <summary>
    /// Wakes a hibernated grain with its state before a callback, placed as a new connection's grain is. Nothing to do
    /// when it is awake, or a call by id woke it first (it took the state itself).
    /// </summary>
    public async Task WakeAsync()
    {
        if (connection.Sleep.TakeState() is not { } state)
        {
            return;
        }

        var started = Stopwatch.GetTimestamp();
        await CallAsync(state, (grain, s) => Placed(() => WhenDone(grain.Wake(s))));
        listener.Metrics.GrainCall(listener.Name, "wake", started);
    }

    private static async Task<bool> WhenDone(Task call)
    {
        await call;
        return true;
    }

    /// <summary>
    /// Calls the grain. Orleans rejects a request it did not deliver, typically when the grain has moved and the silo it
    /// left, which the cached address still names, is stopping and no longer forwards. The grain never saw that call,
    /// so it goes again (the rejection cleared the cached address), a few times at most.
    /// </summary>
    private async Task<T> CallAsync<TState, T>(TState state, Func<IProtocolGrain, TState, Task<T>> call)
    {
        if (connection.Sleep.IsAsleep)
        {
            await WakeAsync();
        }

        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call(_grain, state);
            }
            catch (OrleansMessageRejectionException ex) when (attempt < MaxGrainCallAttempts)
            {
                GatewayLog.GrainCallRejected(listener.Logger, connection.Id, attempt, ex.Message);
            }
        }
    }
}
