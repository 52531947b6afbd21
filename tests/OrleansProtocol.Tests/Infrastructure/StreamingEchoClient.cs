using System.Diagnostics;
using System.Net;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// A client that streams to an echo server until stopped: writes deterministic bytes in chunks, reads the echo back
/// and checks every byte, in order. When the server closes the connection it records how: a clean EOF after an
/// exact prefix of what was sent, or a reset.
/// </summary>
public sealed class StreamingEchoClient : IAsyncDisposable
{
    private readonly TestClient _client;
    private readonly CancellationTokenSource _stop = new();
    private readonly Random _random;
    private readonly Task _run;
    private long _echoed;
    private readonly CallbackRecorder.Signal _progress = new();
    private readonly long _started = Stopwatch.GetTimestamp();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _lastProgressTicks;
    private long _longestPauseTicks;
    private readonly List<TimeSpan> _roundTrips = [];

    private StreamingEchoClient(TestClient client, int seed, int chunk, TimeSpan pace)
    {
        _client = client;
        _random = new Random(seed);
        _run = Task.Run(() => RunAsync(chunk, pace));
    }

    public static async Task<StreamingEchoClient> StartAsync(EndPoint endPoint, int seed, int chunk = 1024, TimeSpan? pace = null) =>
        new(await TestClient.ConnectAsync(endPoint), seed, chunk, pace ?? TimeSpan.FromMilliseconds(5));

    /// <summary>Bytes echoed back and checked so far.</summary>
    public long Echoed => Interlocked.Read(ref _echoed);

    /// <summary>True once the server ended the connection with a clean EOF (after an exact prefix of the echo).</summary>
    public bool EndedByServer { get; private set; }

    /// <summary>What broke the stream, if anything did: a reset, a wrong byte, a timeout.</summary>
    public Exception? Failure { get; private set; }

    public Task Completion => _run;

    /// <summary>When the stream ended (EOF, reset or failure), as a <see cref="Stopwatch.GetTimestamp"/>; null while it runs.</summary>
    public long? EndedTimestamp { get; private set; }

    /// <summary>The round trip time of the chunks echoed so far, sorted: for percentiles.</summary>
    public TimeSpan[] RoundTrips
    {
        get
        {
            lock (_roundTrips)
            {
                return [.. _roundTrips.Order()];
            }
        }
    }

    /// <summary>The longest time between two echoed chunks (a stall the stream survived, or is in), until it ended.</summary>
    public TimeSpan LongestPause
    {
        get
        {
            var until = EndedTimestamp is { } ended ? Stopwatch.GetElapsedTime(_started, ended).Ticks : _clock.Elapsed.Ticks;
            return TimeSpan.FromTicks(Math.Max(Interlocked.Read(ref _longestPauseTicks), until - Interlocked.Read(ref _lastProgressTicks)));
        }
    }

    /// <summary>Waits until at least <paramref name="bytes"/> more bytes are echoed (the stream is alive).</summary>
    public async Task WaitForProgressAsync(long bytes = 16 * 1024)
    {
        var target = Echoed + bytes;
        using var timeout = new CancellationTokenSource(TestTimeouts.Default);
        while (true)
        {
            var next = _progress.Next;
            if (Echoed >= target || _run.IsCompleted)
            {
                break;
            }

            await Task.WhenAny(next, _run).WaitAsync(timeout.Token);
        }

        Assert.True(Echoed >= target, $"the stream ended after {Echoed} bytes: {Failure?.Message ?? "closed by the server"}");
    }

    /// <summary>Stops streaming after the round in progress; returns once every byte sent was echoed.</summary>
    public async Task StopAsync()
    {
        _stop.Cancel();
        await _run;
    }

    private async Task RunAsync(int chunk, TimeSpan pace)
    {
        var sent = new byte[chunk];
        var echoed = new byte[chunk];
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                _random.NextBytes(sent);
                var start = Stopwatch.GetTimestamp();
                await _client.SendAsync(sent);
                var read = 0;
                while (read < chunk)
                {
                    var n = await _client.ReceiveAsync(echoed.AsMemory(read));
                    if (n == 0)
                    {
                        // A clean end: what came before it is checked below as a prefix.
                        Assert.True(sent.AsSpan(0, read).SequenceEqual(echoed.AsSpan(0, read)), "wrong bytes before the EOF");
                        Interlocked.Add(ref _echoed, read);
                        EndedByServer = true;
                        return;
                    }

                    read += n;
                }

                Assert.True(sent.AsSpan().SequenceEqual(echoed), $"wrong bytes after {Echoed}");
                Interlocked.Add(ref _echoed, chunk);
                lock (_roundTrips)
                {
                    _roundTrips.Add(Stopwatch.GetElapsedTime(start));
                }

                var now = _clock.Elapsed.Ticks;
                Interlocked.Exchange(ref _longestPauseTicks, Math.Max(Interlocked.Read(ref _longestPauseTicks), now - Interlocked.Exchange(ref _lastProgressTicks, now)));
                _progress.Fire();
                await Task.Delay(pace);
            }
        }
        catch (Exception ex)
        {
            Failure = ex;
        }
        finally
        {
            EndedTimestamp = Stopwatch.GetTimestamp();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        await _client.DisposeAsync();
        await _run.WaitAsync(TestTimeouts.Default).ContinueWith(_ => { });
    }
}
