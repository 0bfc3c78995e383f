# frozen_string_literal: true

# A deliberately small HTTP/1.1 server on the standard library's TCPServer.
#
# Why not WEBrick: it left Ruby's default gems in 3.0, so it would be the one
# dependency of this service. This server only has to do what the frontend
# needs behind an Envoy sidecar: one request per connection (Connection:
# close), a thread per connection with a cap, bounded header/body reads with
# a read timeout, one JSON log line per request, and a graceful drain.
require 'json'
require 'socket'
require 'time'

module MiniHTTP
  Request = Struct.new(:method, :target, :path, :query, :headers, :body, :remote_addr,
                       keyword_init: true) do
    # Header lookup, case-insensitive (keys are stored lower-case).
    def [](name)
      headers[name.downcase]
    end
  end

  REASONS = {
    200 => 'OK', 400 => 'Bad Request', 404 => 'Not Found', 405 => 'Method Not Allowed',
    408 => 'Request Timeout', 413 => 'Payload Too Large', 431 => 'Request Header Fields Too Large',
    500 => 'Internal Server Error', 501 => 'Not Implemented', 503 => 'Service Unavailable'
  }.freeze

  class BadRequest < StandardError
    attr_reader :status

    def initialize(status, message)
      super(message)
      @status = status
    end
  end

  # Trace id for the log: the Root of X-Amzn-Trace-Id, else the W3C trace-id.
  def self.trace_id(headers)
    if (amzn = headers['x-amzn-trace-id'])
      root = amzn[/(?:\A|;)\s*Root=([^;]+)/, 1]
      return root ? root.strip : amzn
    end
    if (tp = headers['traceparent'])
      parts = tp.strip.split('-')
      return parts.size >= 4 ? parts[1] : tp
    end
    nil
  end

  class Server
    MAX_HEADER_BYTES = 16 * 1024
    MAX_BODY_BYTES = 1024 * 1024
    READ_TIMEOUT = 10.0
    MAX_CONNECTIONS = 256

    # handler: responds to call(request) -> [status, headers_hash, body_string].
    # log_io: where the per-request JSON lines go (flushed after each line).
    # log_requests: false for a listener whose requests are noise (health probes).
    def initialize(host:, port:, handler:, service: 'frontend', log_io: $stdout, log_requests: true)
      @tcp = TCPServer.new(host, port)
      @port = @tcp.addr[1]
      @handler = handler
      @service = service
      @log_io = log_io
      @log_requests = log_requests
      @log_lock = Mutex.new
      @workers = []
      @workers_lock = Mutex.new
      @wake_r, @wake_w = IO.pipe
    end

    attr_reader :port

    # Accepts connections until #request_stop; then closes the listening
    # socket so new connections are refused. In-flight requests go on.
    def serve
      loop do
        ready, = IO.select([@tcp, @wake_r])
        break if ready.include?(@wake_r)

        begin
          socket = @tcp.accept_nonblock
        rescue IO::WaitReadable, Errno::EINTR, Errno::ECONNABORTED
          next
        end
        spawn_worker(socket)
      end
    ensure
      @tcp.close unless @tcp.closed?
    end

    # Safe to call from a signal trap: it only writes to a pipe.
    def request_stop
      @wake_w.write_nonblock('.')
    rescue IO::WaitWritable, IOError
      nil
    end

    # Waits for in-flight requests; false when the timeout ran out first.
    def drain(timeout)
      deadline = monotonic + timeout
      loop do
        workers = @workers_lock.synchronize { @workers.dup }
        return true if workers.empty?

        remaining = deadline - monotonic
        return false if remaining <= 0

        workers.first.join([remaining, 0.05].min)
      end
    end

    def log(entry)
      line = JSON.generate(entry)
      @log_lock.synchronize do
        @log_io.write(line, "\n")
        @log_io.flush
      end
    rescue IOError, SystemCallError
      nil
    end

    private

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def spawn_worker(socket)
      @workers_lock.synchronize do
        if @workers.size >= MAX_CONNECTIONS
          reject(socket)
          return
        end
        thread = Thread.new { handle(socket) }
        @workers << thread
      end
    end

    def reject(socket)
      socket.write("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    rescue SystemCallError, IOError
      nil
    ensure
      socket.close
    end

    def handle(socket)
      started = monotonic
      request = nil
      status = 500
      begin
        request = read_request(socket)
        return if request.nil? # client went away or sent nothing

        status, headers, body = call_handler(request)
        write_response(socket, status, headers, body, head: request.method == 'HEAD')
      rescue BadRequest => e
        status = e.status
        write_response(socket, status, { 'Content-Type' => 'application/json' },
                       JSON.generate(error: e.message))
        discard_unread(socket)
      rescue SystemCallError, IOError
        nil # the client hung up; nothing to answer
      ensure
        socket.close unless socket.closed?
        log_request(request, status, started) if @log_requests && (request || status != 500)
        @workers_lock.synchronize { @workers.delete(Thread.current) }
      end
    end

    def call_handler(request)
      @handler.call(request)
    rescue StandardError => e
      warn("#{e.class}: #{e.message}")
      [500, { 'Content-Type' => 'application/json' }, JSON.generate(error: 'internal error')]
    end

    def log_request(request, status, started)
      headers = request ? request.headers : {}
      log(time: Time.now.utc.iso8601(3), service: @service,
          method: request&.method, path: request&.path, status: status,
          duration_ms: ((monotonic - started) * 1000).round(3),
          trace_id: MiniHTTP.trace_id(headers),
          x_amzn_trace_id: headers['x-amzn-trace-id'], traceparent: headers['traceparent'])
    end

    def read_request(socket)
      deadline = monotonic + READ_TIMEOUT
      buffer = +''
      until (head_end = buffer.index("\r\n\r\n"))
        raise BadRequest.new(431, 'request head too large') if buffer.bytesize > MAX_HEADER_BYTES

        chunk = read_some(socket, deadline)
        if chunk.nil?
          return nil if buffer.empty?

          raise BadRequest.new(408, 'incomplete request head')
        end
        buffer << chunk
      end
      raise BadRequest.new(431, 'request head too large') if head_end > MAX_HEADER_BYTES

      lines = buffer[0, head_end].split("\r\n")
      method, target, version = lines.shift.to_s.split(' ', 3)
      unless method&.match?(/\A[A-Z]+\z/) && target&.start_with?('/') && version&.start_with?('HTTP/1.')
        raise BadRequest.new(400, 'malformed request line')
      end

      headers = parse_headers(lines)
      body = read_body(socket, headers, buffer[(head_end + 4)..], deadline)
      path, query = target.split('?', 2)
      Request.new(method: method, target: target, path: path, query: query || '',
                  headers: headers, body: body, remote_addr: remote_addr(socket))
    end

    def parse_headers(lines)
      lines.each_with_object({}) do |line, headers|
        name, value = line.split(':', 2)
        raise BadRequest.new(400, 'malformed header') if value.nil? || name.empty? || name.match?(/\s/)

        key = name.downcase
        value = value.strip
        headers[key] = headers.key?(key) ? "#{headers[key]}, #{value}" : value
      end
    end

    def read_body(socket, headers, already, deadline)
      raise BadRequest.new(501, 'chunked request bodies are not supported') if headers['transfer-encoding']

      length = headers['content-length']
      return '' if length.nil?
      raise BadRequest.new(400, 'bad content-length') unless length.match?(/\A\d+\z/)

      length = length.to_i
      raise BadRequest.new(413, 'body too large') if length > MAX_BODY_BYTES

      body = already.b
      while body.bytesize < length
        chunk = read_some(socket, deadline)
        raise BadRequest.new(408, 'incomplete body') if chunk.nil?

        body << chunk
      end
      body.byteslice(0, length)
    end

    # Next bytes from the socket, or nil on EOF or when the deadline passed.
    def read_some(socket, deadline)
      loop do
        return socket.read_nonblock(16 * 1024)
      rescue IO::WaitReadable
        remaining = deadline - monotonic
        return nil if remaining <= 0 || IO.select([socket], nil, nil, remaining).nil?
      rescue EOFError
        return nil
      end
    end

    # After an early error answer the client may still be sending; closing
    # with unread data would reset the connection and lose the answer.
    def discard_unread(socket)
      socket.close_write
      deadline = monotonic + 1.0
      total = 0
      while (chunk = read_some(socket, deadline)) && total < MAX_BODY_BYTES
        total += chunk.bytesize
      end
    rescue SystemCallError, IOError
      nil
    end

    def remote_addr(socket)
      socket.remote_address.ip_address
    rescue SystemCallError, SocketError
      nil
    end

    def write_response(socket, status, headers, body, head: false)
      body = body.to_s.b
      out = +"HTTP/1.1 #{status} #{REASONS.fetch(status, 'Status')}\r\n"
      headers.each { |name, value| out << "#{name}: #{value}\r\n" }
      out << "Content-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n"
      out = out.b
      out << body unless head
      socket.write(out)
    end
  end
end
