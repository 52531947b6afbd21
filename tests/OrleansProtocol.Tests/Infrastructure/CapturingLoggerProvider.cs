using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>Keeps every log message (Information and up) so tests can assert what the gateway said.</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<(LogLevel Level, string Category, string Message)> _entries = new();
    private readonly CallbackRecorder.Signal _changed = new();

    public IReadOnlyCollection<(LogLevel Level, string Category, string Message)> Entries => _entries.ToArray();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public async Task<string> WaitForAsync(Func<string, bool> match)
    {
        using var cts = new CancellationTokenSource(TestTimeouts.Default);
        while (true)
        {
            var next = _changed.Next;
            if (_entries.FirstOrDefault(e => match(e.Message)).Message is { } found)
            {
                return found;
            }

            await next.WaitAsync(cts.Token);
        }
    }

    public void Dispose()
    {
    }

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                owner._entries.Enqueue((logLevel, category, formatter(state, exception)));
                owner._changed.Fire();
            }
        }
    }
}
