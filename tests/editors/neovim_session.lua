-- One user's session in headless Neovim, driven by tests/editors/test_neovim.py: load the Geex
-- config users copy (editors/neovim/geex.lua), open a Python file, type the completion key in
-- insert mode after "return ", write the file, translate the function with :GeexTranslate and
-- through the `geex task` filter, and record what happened as JSON. Every wait is bounded; a
-- step that never comes is recorded as an error and the session still ends.
-- Run as: GEEX_NVIM_SESSION=settings.json nvim --headless --clean -c 'luafile THIS'

local settings = vim.json.decode(io.open(os.getenv('GEEX_NVIM_SESSION')):read('*a'))
local WAIT_MS = settings.wait_ms
local report = { errors = {}, messages = {} }
local show_message = vim.notify
vim.notify = function(message, level, opts)
  table.insert(report.messages, { message = message, level = level })
  return show_message(message, level, opts)
end

local function fail(message)
  table.insert(report.errors, message)
end

local function lines(bufnr)
  return vim.api.nvim_buf_get_lines(bufnr or 0, 0, -1, true)
end

--- The window's buffer as the screen shows it (control characters as ^X), the cursor's line
--- marked, and at most CAPTURE_LINES lines: a terminal capture for the docs.
local CAPTURE_LINES = 12
local function capture(title)
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local shown = { ('-- %s (%s, cursor at line %d, column %d)'):format(title,
    vim.fn.fnamemodify(vim.api.nvim_buf_get_name(0), ':t'), row, col + 1) }
  local all = lines()
  for index = 1, math.min(#all, CAPTURE_LINES) do
    table.insert(shown, (index == row and '> ' or '  ') .. vim.fn.strtrans(all[index]))
  end
  if #all > CAPTURE_LINES then
    table.insert(shown, ('  ... %d more lines'):format(#all - CAPTURE_LINES))
  end
  return table.concat(shown, '\n')
end

local function session()
  local geex = dofile(settings.plugin)
  geex.setup({ agent = settings.agent, geex = settings.geex, url = settings.url })

  vim.cmd.edit(vim.fn.fnameescape(settings.file))
  local source = vim.api.nvim_get_current_buf()
  local client
  local started = vim.wait(WAIT_MS, function()
    client = vim.lsp.get_clients({ bufnr = source, name = 'geex' })[1]
    return client ~= nil and client.initialized == true
  end, 20)
  if not started then
    return fail('the language server did not start (see the log in ' .. vim.lsp.log.get_filename()
      .. ')')
  end
  report.filetype = vim.bo[source].filetype
  report.server_info = client.server_info
  report.capabilities = {
    completion = client:supports_method('textDocument/completion'),
    inline_completion = client:supports_method('textDocument/inlineCompletion'),
  }
  -- What Neovim 0.12's inline completion would send: does this agent answer it?
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 1 }
  local inline = client:request_sync('textDocument/inlineCompletion', params, WAIT_MS, source)
  report.inline_completion = inline and { error = inline.err, result = inline.result } or 'timeout'

  -- The user's keys: `a` after "return ", the completion key, then Esc once the text is in.
  vim.api.nvim_win_set_cursor(0, { settings.cursor[1], settings.cursor[2] - 1 })
  report.before = lines(source)
  report.capture_before = capture('before')
  local tick = vim.b[source].changedtick
  local deadline = vim.uv.now() + WAIT_MS
  local timer = assert(vim.uv.new_timer())
  timer:start(20, 20, vim.schedule_wrap(function()
    local inserted = vim.b[source].changedtick ~= tick
    if inserted or vim.uv.now() > deadline then
      timer:stop()
      report.completed_in_insert_mode = vim.api.nvim_get_mode().mode == 'i'
      report.capture_after = capture('after ' .. settings.complete_key)
      if not inserted then
        fail('no completion was inserted')
      end
      vim.api.nvim_input('<Esc>')
    end
  end))
  vim.api.nvim_feedkeys('a' .. vim.keycode(settings.complete_key), 'x!', false)
  timer:close()
  report.after = lines(source)
  vim.cmd.write()

  -- :GeexTranslate on the function's lines, into a new split.
  vim.cmd(('%d,%dGeexTranslate %s'):format(settings.translate[1], settings.translate[2],
    settings.target))
  local answer = vim.api.nvim_get_current_buf()
  if answer == source then
    return fail(':GeexTranslate opened no split')
  end
  if not vim.wait(WAIT_MS, function() return vim.b[answer].geex_task_done == true end, 20) then
    return fail(':GeexTranslate got no answer')
  end
  report.translation = lines(answer)
  report.translation_filetype = vim.bo[answer].filetype
  report.windows = #vim.api.nvim_tabpage_list_wins(0)
  report.capture_translation = capture(':' .. settings.translate[1] .. ',' .. settings.translate[2]
    .. 'GeexTranslate ' .. settings.target)

  -- The same lines through `geex task` as a filter, which replaces them.
  vim.cmd.wincmd('p')
  vim.cmd(('%d,%d!%s'):format(settings.translate[1], settings.translate[2], settings.filter))
  report.filter_shell_error = vim.v.shell_error
  report.filtered = lines(source)

  -- The split closed while the answer is on its way: the task is stopped, and nothing fails
  -- when it ends (an error in a callback lands in v:errmsg).
  vim.v.errmsg = ''
  local messages_before_close = #report.messages
  local closed, job = geex.task('translate', settings.translate[1], settings.translate[2],
    { '--to', settings.target })
  vim.api.nvim_win_close(vim.fn.bufwinid(closed), true)
  local ended = job:wait(WAIT_MS)
  local flushed = false
  vim.schedule(function() flushed = true end) -- after the task's own end callback
  vim.wait(WAIT_MS, function() return flushed end, 20)
  report.closed_task = { signal = ended.signal, buffer_left = vim.api.nvim_buf_is_valid(closed),
    errmsg = vim.v.errmsg, messages = #report.messages - messages_before_close }

  -- A target the server does not know: an error message naming it, and no split left behind.
  local messages = #report.messages
  vim.cmd(('%d,%dGeexTranslate klingon'):format(settings.translate[1], settings.translate[2]))
  if not vim.wait(WAIT_MS, function() return #report.messages > messages end, 20) then
    return fail(':GeexTranslate klingon reported nothing')
  end
  report.windows_after_refusal = #vim.api.nvim_tabpage_list_wins(0)

  -- No geex command where the config says: an error message naming it, and no split.
  geex.setup({ agent = settings.agent, geex = { 'geex-not-installed' }, url = settings.url })
  pcall(vim.cmd, 'GeexExplain') -- an error message in a command is raised to its caller
  report.windows_without_geex = #vim.api.nvim_tabpage_list_wins(0)
end

local ok, err = xpcall(session, debug.traceback)
if not ok then
  fail(err)
end
local out = assert(io.open(settings.out, 'w'))
out:write(vim.json.encode(report))
out:close()
vim.cmd('qa!')
