namespace OrleansProtocol;

/// <summary>
/// Sends what a grain's transport recorded outside a gateway callback (timers, background work, calls from other
/// grains) through the gateway's observer: one awaited push at a time, what is recorded meanwhile coalescing into the
/// next push. Inside a callback nothing is pushed: the callback's reply carries it.
/// </summary>
/// <typeparam name="TBatch">What one push carries.</typeparam>
internal sealed class UnsolicitedSender<TBatch>(
    Func<bool> inCallback,
    Func<TBatch?> take,
    Func<TBatch, Task> send,
    Func<Exception, Task> onFailure)
    where TBatch : class
{
    private bool _pushing;

    /// <summary>Something was recorded: push it unless a callback's reply will carry it, or a push is under way.</summary>
    public void Changed()
    {
        if (inCallback() || _pushing)
        {
            return;
        }

        _pushing = true;
        _ = PushAsync();
    }

    private async Task PushAsync()
    {
        try
        {
            // Let the current turn finish, so its operations travel together. Runs on the grain's scheduler.
            await Task.Yield();
            while (!inCallback() && take() is { } batch)
            {
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
        }
    }
}
