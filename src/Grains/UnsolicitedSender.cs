namespace OrleansProtocol;

/// <summary>
/// Sends what a grain's transport recorded outside a gateway callback (timers, background work, calls from other
/// grains) through the gateway's observer: one awaited push at a time, what is recorded meanwhile coalescing into the
/// next push. Inside a callback nothing is pushed: the callback's reply carries it.
/// </summary>
/// <remarks>
/// With <c>overHighWater</c>, a push that carries data waits while the gateway's write buffer is over the high-water
/// mark (operations without data, an abort say, go at once): the gateway then holds at most one push beyond the mark,
/// and what the protocol writes meanwhile stays with the grain, where <c>GetWriteBufferSize</c> counts it.
/// </remarks>
/// <typeparam name="TBatch">What one push carries.</typeparam>
internal sealed class UnsolicitedSender<TBatch>(
    Func<bool> inCallback,
    Func<TBatch?> take,
    Func<TBatch, Task> send,
    Func<Exception, Task> onFailure,
    Func<bool>? overHighWater = null,
    Func<bool>? pendingData = null)
    where TBatch : class
{
    private bool _pushing;
    private bool _stopped;
    private Task _push = Task.CompletedTask;
    private TaskCompletionSource? _released;
    private TaskCompletionSource? _flushed;

    /// <summary>Something was recorded: push it unless a callback's reply will carry it, or a push is under way.</summary>
    public void Changed()
    {
        if (inCallback() || _stopped)
        {
            return;
        }

        if (_pushing)
        {
            // A held push may now have something that goes regardless (an abort, a flag without data).
            Release();
            return;
        }

        _pushing = true;
        _push = PushAsync();
    }

    /// <summary>
    /// Stops pushing (the grain is leaving): a push in flight completes, a held one is given up; what is not pushed
    /// stays with the transport.
    /// </summary>
    public Task StopAsync()
    {
        _stopped = true;
        Release();
        return _push;
    }

    /// <summary>The hold may be over (the gateway reported bytes sent, or the connection ended): look again.</summary>
    public void Released()
    {
        Release();
        CompleteFlushedIfIdle();
    }

    /// <summary>
    /// Completes once nothing recorded outside a callback waits to be pushed and the hold is off (or the connection
    /// ended): the moment an unsolicited write is "sent" as far as back-pressure goes.
    /// </summary>
    public Task WhenFlushed()
    {
        if (IsIdle)
        {
            return Task.CompletedTask;
        }

        return (_flushed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }

    private bool IsIdle => !_pushing && !(overHighWater?.Invoke() ?? false);

    private void Release()
    {
        var released = _released;
        _released = null;
        released?.TrySetResult();
    }

    private void CompleteFlushedIfIdle()
    {
        if (_flushed is { } flushed && IsIdle)
        {
            _flushed = null;
            flushed.TrySetResult();
        }
    }

    private async Task PushAsync()
    {
        try
        {
            // Let the current turn finish, so its operations travel together. Runs on the grain's scheduler.
            await Task.Yield();
            while (!inCallback() && !_stopped)
            {
                if (overHighWater?.Invoke() == true && pendingData?.Invoke() != false)
                {
                    await (_released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                    continue;
                }

                if (_stopped || take() is not { } batch)
                {
                    break;
                }

                await send(batch);
            }
        }
        catch (Exception ex)
        {
            await onFailure(ex);
        }
        finally
        {
            _pushing = false;
            CompleteFlushedIfIdle();
        }
    }
}
