using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Serialization;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// Hibernation: a connection quiet for its listener's <c>HibernateAfter</c> holds no activation. The grain hands the
/// gateway its state — the transport's, as when it migrates, and the protocol's own fields through
/// <see cref="Dehydrate"/> — and deactivates; the gateway keeps the socket and the state, and wakes the grain with it
/// before the next callback (the peer's bytes, EOF or close, a server close) or when a call by id reaches it.
/// </summary>
/// <remarks>
/// Opt in with <see cref="Hibernatable"/>, with <see cref="Dehydrate"/> and <see cref="Rehydrate"/> carrying every
/// field the protocol keeps. A grain with a callback running, a <c>CallSoon</c>/<c>CallLater</c>/<c>CallAt</c> or a
/// <c>CreateTask</c> task pending, or writes not yet handed to the gateway stays awake, and is asked again after the
/// next quiet period. <see cref="ProtocolGrain.ConnectionMade"/> is not repeated on waking; the woken activation's
/// <see cref="Grain.OnActivateAsync"/> runs after <see cref="Rehydrate"/>, as after a move.
/// </remarks>
public abstract partial class ProtocolGrain
{
    private TaskCompletionSource? _waking;

    /// <summary>
    /// True when this protocol's connections may hibernate on a listener with <c>HibernateAfter</c> set; false (the
    /// default) keeps the grain active for the connection's life. Return true when <see cref="Dehydrate"/> and
    /// <see cref="Rehydrate"/> carry every field the protocol keeps (or it keeps none).
    /// </summary>
    protected virtual bool Hibernatable => false;

    async Task<byte[]?> IProtocolGrain.Hibernate(long bytesSent)
    {
        if (!Hibernatable || _transport is not { } transport || _observer is not { } observer || _lostDelivered)
        {
            return null;
        }

        transport.OnBytesSent(bytesSent);
        if (!CanSleep(transport))
        {
            return null;
        }

        if (_sender is { } sender)
        {
            // A push in flight completes first; one made meanwhile (a call by id) keeps the grain awake.
            await sender.StopAsync();
            _sender = null;
            if (!CanSleep(transport) || _transport is null)
            {
                OnTransportChanged();
                return null;
            }
        }

        StopWatchingGateway();
        var context = new HibernationContext(ServiceProvider.GetRequiredService<Serializer>());
        context.TryAddValue(MigrationKey, transport.Dehydrate(observer));
        Dehydrate(context);
        var state = context.ToBytes();

        // From here the activation holds nothing of the connection: its deactivation lets nothing go.
        _counts?.Connection(-1);
        _counts = null;
        _transport = null;
        _observer = null;
        DeactivateOnIdle();
        Logger.LogDebug("Connection {ConnectionId} hibernates ({Bytes} bytes of state at the gateway).", transport.Connection.ConnectionId, state.Length);
        return state;
    }

    Task IProtocolGrain.Wake(byte[] state)
    {
        if (_transport is null && !_lostDelivered)
        {
            Restore(state);
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// A call by id found no connection here: if its gateway holds it hibernated, take the state from there (or wait
    /// for the gateway's own <see cref="IProtocolGrain.Wake"/>, already on its way). True when the connection is live.
    /// </summary>
    private async ValueTask<bool> WakeForCallAsync()
    {
        if (_transport is not null || _lostDelivered)
        {
            return _transport is not null && !_lostDelivered;
        }

        if (_waking is null)
        {
            _waking = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var connectionId = this.GetPrimaryKeyString();
            var registries = ServiceProvider.GetRequiredService<IConnectionRegistryClient>();
            var membership = ServiceProvider.GetRequiredService<IClusterMembershipService>();
            var answers = await Task.WhenAll(membership.ActiveSilos()
                .Select(silo => membership.AskAsync(silo, registries.On(silo), r => r.TakeHibernated(connectionId), default(HibernatedState))));
            if (answers.FirstOrDefault(a => a.State is not null).State is { } state)
            {
                if (_transport is null)
                {
                    Restore(state);
                }
            }
            else if (!answers.Any(a => a.Live))
            {
                _waking.TrySetResult(); // no gateway holds it: gone
            }
        }

        // The gateway is waking the grain itself: its Wake comes shortly.
        try
        {
            await _waking.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (TimeoutException)
        {
            Logger.LogWarning("Connection {ConnectionId}: its gateway was waking it, and its state did not come within 30 s.", this.GetPrimaryKeyString());
        }

        return _transport is not null && !_lostDelivered;
    }

    /// <summary>A call by id is fetching this connection's state: the gateway's callbacks wait for it.</summary>
    private ValueTask WhileWaking() => _waking is { Task.IsCompleted: false } waking ? new ValueTask(waking.Task) : default;

    private bool CanSleep(ProtocolTransport transport) =>
        _callbackDepth == 0 && !transport.HasPendingData && !transport.IsClosing
        && (_timers?.Count ?? 0) == 0 && (_soon?.Count ?? 0) == 0 && (_tasks?.Count ?? 0) == 0;

    private void Restore(byte[] state)
    {
        var context = HibernationContext.FromBytes(ServiceProvider.GetRequiredService<Serializer>(), state);
        if (!context.TryGetValue(MigrationKey, out MigratedConnection? slept))
        {
            throw new InvalidOperationException("A hibernated connection's state has no transport.");
        }

        _observer = slept.Observer;
        _transport = ProtocolTransport.Rehydrate(this, slept);
        Rehydrate(context);
        CountConnection();
        WatchGateway();

        // The gateway follows the grain to this activation's silo.
        _transport.MarkMoved(RuntimeIdentity);
        _waking ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _waking.TrySetResult();
        Logger.LogDebug("Connection {ConnectionId} woke (batch {Sequence}).", slept.Connection.ConnectionId, slept.LastSequence);
    }
}
