using System.Diagnostics;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// Waits for state that raises no event (a counter in the gateway, a buffer size) by looking at it every few
/// milliseconds, bounded by <see cref="TestTimeouts.Default"/>. Where an event exists, await the event instead.
/// </summary>
public static class Poll
{
    public static async Task UntilAsync(Func<bool> condition, Func<string>? describe = null)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < TestTimeouts.Default, describe?.Invoke() ?? "the condition never held");
            await Task.Delay(10);
        }
    }

    /// <summary>As <see cref="UntilAsync(Func{bool}, Func{string}?)"/>, for state that takes a call to read (a grain's statistics).</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, Func<string>? describe = null)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(deadline.Elapsed < TestTimeouts.Default, describe?.Invoke() ?? "the condition never held");
            await Task.Delay(10);
        }
    }
}
